"""mxo_async: an asyncio-native client for the MXO Customer API."""

from __future__ import annotations

from ._audit import JournalSummary, export_journal, summarize_journal
from ._batcher import Batcher
from ._client import MXOClient
from ._config import Limits, Timeouts
from ._delivery import BatcherFullError, BatcherStats, BatchReport, Delivery
from ._errors import (
    AmbiguousDeliveryError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ForbiddenError,
    MXOError,
    NotFoundError,
    RateLimitedError,
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
from ._executor import ClientStats
from ._fanout import FanOut, Progress
from ._journal import JournalError
from ._models import (
    Activity,
    ActivityRequest,
    ActivityResult,
    Customer,
    Erasure,
    Identifier,
    Outcome,
)
from ._retry import RetryPolicy
from ._throttle import ThrottleStats

__version__ = "0.1.0"

__all__ = [
    "APIStatusError",
    "Activity",
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
    "ClientStats",
    "ConcurrencyChanged",
    "Customer",
    "Delivery",
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
    "RequestSent",
    "ResponseFormatError",
    "ResponseReceived",
    "RetryPolicy",
    "RetryScheduled",
    "ServerError",
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
