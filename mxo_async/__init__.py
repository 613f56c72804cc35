"""mxo_async: an asyncio-native client for the MXO Customer API."""

from __future__ import annotations

import logging

from ._audit import JournalSummary, export_journal, summarize_journal
from ._batcher import Batcher, BatcherStats, BatchReport, Delivery
from ._calls import ClientStats
from ._client import JSON, MXOClient
from ._config import Limits, Timeouts
from ._errors import (
    AmbiguousDeliveryError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    BatcherFullError,
    ClientClosedError,
    ForbiddenError,
    MXOError,
    NotFoundError,
    RateLimitedError,
    RejectedActivitiesError,
    ResponseFormatError,
    ServerError,
    TimeoutError,
    TransportError,
    UnauthorizedError,
    ValidationError,
)
from ._events import (
    BatchFlushed,
    ConcurrencyChanged,
    Event,
    EventHandler,
    FleetSharingChanged,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
    Throttled,
    TokenRefreshed,
)
from ._fanout import FanOut, Progress
from ._journal import JournalError
from ._models import (
    Activity,
    ActivityError,
    ActivityRequest,
    ActivityResult,
    Customer,
    Device,
    Erasure,
    Identifier,
    Outcome,
    Structure,
)
from ._retry import RetryPolicy
from ._throttle import ThrottleStats
from ._version import __version__

# A library logs; the application decides where it goes. Without a handler of our own, Python's
# last-resort handler would print WARNINGs on stderr of programs that never configured logging.
logging.getLogger("mxo_async").addHandler(logging.NullHandler())


__all__ = [
    "JSON",
    "APIStatusError",
    "Activity",
    "ActivityError",
    "ActivityRequest",
    "ActivityResult",
    "AmbiguousDeliveryError",
    "AuthenticationError",
    "BadRequestError",
    "BatchFlushed",
    "BatchReport",
    "Batcher",
    "BatcherFullError",
    "BatcherStats",
    "ClientClosedError",
    "ClientStats",
    "ConcurrencyChanged",
    "Customer",
    "Delivery",
    "Device",
    "Erasure",
    "Event",
    "EventHandler",
    "FanOut",
    "FleetSharingChanged",
    "ForbiddenError",
    "Identifier",
    "JournalError",
    "JournalSummary",
    "Limits",
    "MXOClient",
    "MXOError",
    "NotFoundError",
    "Outcome",
    "Progress",
    "RateLimitedError",
    "RejectedActivitiesError",
    "RequestSent",
    "ResponseFormatError",
    "ResponseReceived",
    "RetryPolicy",
    "RetryScheduled",
    "ServerError",
    "Structure",
    "ThrottleStats",
    "Throttled",
    "TimeoutError",
    "Timeouts",
    "TokenRefreshed",
    "TransportError",
    "UnauthorizedError",
    "ValidationError",
    "__version__",
    "export_journal",
    "summarize_journal",
]

# Tracebacks and reprs name the public path (mxo_async.ServerError), not the private module that
# defines it, as httpx does.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) and _value.__module__.startswith("mxo_async."):
        _value.__module__ = "mxo_async"
del _name, _value
