"""Typed events delivered to ``on_event``: cheap frozen records, built only when someone listens."""

from __future__ import annotations

from collections.abc import Callable

import attrs

__all__ = [
    "BatchFlushed",
    "ConcurrencyChanged",
    "Event",
    "EventHandler",
    "FleetSharingChanged",
    "RequestSent",
    "ResponseReceived",
    "RetryScheduled",
    "Throttled",
    "TokenRefreshed",
]


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
    """The adaptive limit moved (halved on overload, grown on success)."""

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
