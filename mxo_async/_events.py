"""Typed events delivered to ``on_event``: cheap frozen records, built only when someone listens."""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

__all__ = [
    "BatchFlushed",
    "ConcurrencyChanged",
    "Event",
    "EventHandler",
    "FleetSharingChanged",
    "IsolatedCallback",
    "RequestSent",
    "ResponseReceived",
    "RetryScheduled",
    "Throttled",
    "TokenRefreshed",
    "isolated",
]

_log = logging.getLogger("mxo_async")


@attrs.frozen
class RequestSent:
    """An attempt left the client. ``customer`` is masked; the URL carries no query string."""

    operation: str
    method: str
    path: str
    attempt: int
    customer: str


@attrs.frozen
class ResponseReceived:
    """An attempt got a response (``status``) after ``elapsed`` seconds."""

    operation: str
    status: int
    attempt: int
    elapsed: float


@attrs.frozen
class RetryScheduled:
    """An attempt failed and another follows after ``delay`` seconds."""

    operation: str
    attempt: int
    delay: float
    reason: str


@attrs.frozen
class TokenRefreshed:
    """A new access token was obtained (the token itself is never part of an event)."""

    reason: str
    expires_in: float


@attrs.frozen
class Throttled:
    """The shared throttle held a call back: ``reason`` is ``rate``, ``pause`` or ``concurrency``."""

    reason: str
    delay: float


@attrs.frozen
class ConcurrencyChanged:
    """The adaptive limit moved: ``reason`` is ``overload`` (halved), ``success`` (grown) or
    ``restored`` (a cut undone: the pushback did not follow the rate, so it was no capacity
    signal)."""

    limit: int
    reason: str


@attrs.frozen
class BatchFlushed:
    """The batcher sent a buffer: ``reason`` is ``size``, ``latency``, ``pressure``, ``flush`` or ``close``."""

    activities: int
    reason: str


@attrs.frozen
class FleetSharingChanged:
    """A fleet coordinator stopped (``sharing=False``) or resumed sharing rate, pause and token.

    While not sharing, the client runs on its own throttle at its share of the fleet's rate.
    ``reason`` says why: ``started``, ``resumed``, or the failure's exception type name.
    """

    sharing: bool
    reason: str


Event = (
    RequestSent
    | ResponseReceived
    | RetryScheduled
    | TokenRefreshed
    | Throttled
    | ConcurrencyChanged
    | BatchFlushed
    | FleetSharingChanged
)
EventHandler = Callable[[Event], None]


class IsolatedCallback:
    """A caller's callback that can never change what the library does or reports.

    An exception it raises is logged (with its traceback, once per callback) and counted in
    :attr:`failures`; the library carries on as if the callback had returned.
    """

    __slots__ = ("_callback", "_name", "failures")

    def __init__(self, callback: Callable[..., object], name: str) -> None:
        self._callback = callback
        self._name = name
        self.failures = 0

    def __call__(self, *args: object) -> None:
        try:
            self._callback(*args)
        except Exception:
            self.failures += 1
            if self.failures == 1:
                _log.exception(
                    "%s callback raised; ignored (logged once, counted in stats)", self._name
                )


def isolated(callback: Callable[..., object] | None, name: str) -> IsolatedCallback | None:
    """``callback`` wrapped in an :class:`IsolatedCallback` (None stays None)."""
    if callback is None or isinstance(callback, IsolatedCallback):
        return callback
    return IsolatedCallback(callback, name)
