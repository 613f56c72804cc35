"""The exception hierarchy: every error the library raises is an :class:`MXOError`."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import ActivityError, ActivityResult

__all__ = [
    "APIStatusError",
    "AmbiguousDeliveryError",
    "AuthenticationError",
    "BadRequestError",
    "BatcherFullError",
    "ClientClosedError",
    "ForbiddenError",
    "MXOError",
    "NotFoundError",
    "RateLimitedError",
    "RejectedActivitiesError",
    "ResponseFormatError",
    "ServerError",
    "TimeoutError",
    "TransportError",
    "UnauthorizedError",
    "ValidationError",
    "status_error",
]


class MXOError(Exception):
    """Base class of every error raised by mxo_async.

    ``attempts`` counts the HTTP attempts made before the error was raised (0 when the error was
    raised before any request left, as for a :class:`ValidationError`).
    """

    attempts: int = 0


class ValidationError(MXOError, ValueError):
    """Bad input, detected before any request is sent.

    ``field`` names the offending field, e.g. ``activities[0].dynamic_proposition``.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class AuthenticationError(MXOError):
    """The token endpoint refused the client credentials (never retried)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class APIStatusError(MXOError):
    """The API answered with a non-success status.

    ``code`` is the server's machine-readable ``errorCode`` (e.g. ``INVALID_SITEKEY``) when the
    body carried one, else None.
    """

    def __init__(
        self,
        status: int,
        message: str,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        label = f"HTTP {status} {code}" if code else f"HTTP {status}"
        super().__init__(f"{label}: {message}" if message else label)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.code = code


class BadRequestError(APIStatusError):
    """400: the server rejected the request."""


class UnauthorizedError(APIStatusError):
    """401 that persisted after a token refresh."""


class ForbiddenError(APIStatusError):
    """403: the credentials are not allowed to do this (never retried)."""


class NotFoundError(APIStatusError):
    """404: unknown structure, customer or path."""


class RateLimitedError(APIStatusError):
    """429 that outlasted the retry policy, or whose ``Retry-After`` exceeded its cap."""


class ServerError(APIStatusError):
    """5xx that outlasted the retry policy."""


class TransportError(MXOError):
    """The request could not be completed at the connection level.

    ``request_sent`` is False only when the request certainly never reached the server (the
    connection could not be opened), which makes even a non-idempotent call safe to replay.
    """

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class ClientClosedError(TransportError):
    """The client was closed before this call's request could be sent (never sent)."""

    def __init__(self, message: str = "the client is closed; the request was not sent") -> None:
        super().__init__(message, request_sent=False)


class TimeoutError(TransportError, builtins.TimeoutError):
    """A connect, read or overall deadline expired."""


class AmbiguousDeliveryError(MXOError):
    """A non-idempotent request failed after it may have been applied.

    The activity may or may not have been stored; replaying it risks counting it twice. Opt in to
    at-least-once delivery with ``RetryPolicy(retry_ambiguous=True)``.
    """


class BatcherFullError(MXOError):
    """``Batcher.submit`` found no room under ``max_pending`` (with ``when_full="raise"``)."""


class ResponseFormatError(MXOError):
    """A success response whose body does not have the documented shape."""


class RejectedActivitiesError(MXOError):
    """MXO answered 200 but did not process some activities of the request (never retried).

    ``rejected`` lists them as :class:`~mxo_async.ActivityError` values (code, message, the
    echoed activity); the request's other activities were stored. ``result`` is the whole
    :class:`~mxo_async.ActivityResult`.
    """

    def __init__(self, result: ActivityResult) -> None:
        rejected = result.errors
        codes = sorted({error.code for error in rejected})
        super().__init__(
            f"MXO did not process {len(rejected)} "
            f"{'activity' if len(rejected) == 1 else 'activities'} ({', '.join(codes)})"
        )
        self.result = result

    @property
    def rejected(self) -> tuple[ActivityError, ...]:
        """The activities MXO did not process."""
        return self.result.errors


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    429: RateLimitedError,
}


def status_error(
    status: int, message: str, retry_after: float | None = None, code: str | None = None
) -> APIStatusError:
    """Return the most specific :class:`APIStatusError` for ``status``."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIStatusError
    return cls(status, message, retry_after, code)
