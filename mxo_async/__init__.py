"""mxo_async: an asyncio-native client for the MXO Customer API."""

from __future__ import annotations

from ._config import Limits, Timeouts
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
from ._models import (
    Activity,
    ActivityRequest,
    ActivityResult,
    Customer,
    Erasure,
    Identifier,
    Outcome,
)

__version__ = "0.1.0"

__all__ = [
    "APIStatusError",
    "Activity",
    "ActivityRequest",
    "ActivityResult",
    "AmbiguousDeliveryError",
    "AuthenticationError",
    "BadRequestError",
    "Customer",
    "Erasure",
    "ForbiddenError",
    "Identifier",
    "Limits",
    "MXOError",
    "NotFoundError",
    "Outcome",
    "RateLimitedError",
    "ResponseFormatError",
    "ServerError",
    "TimeoutError",
    "Timeouts",
    "TransportError",
    "UnauthorizedError",
    "ValidationError",
    "__version__",
]
