"""The coalescing batcher: activities of one customer context share a request.

``_batcher`` schedules and sends, ``_buffers`` holds contexts and their unsent activities,
``_room`` bounds memory (``max_pending``), ``_delivery`` is what ``submit`` returns and
``_report`` what the batcher counts.
"""

from __future__ import annotations

from .._errors import BatcherFullError
from ._batcher import Batcher
from ._delivery import Delivery
from ._report import BatcherStats, BatchReport

__all__ = ["BatchReport", "Batcher", "BatcherFullError", "BatcherStats", "Delivery"]
