"""The batcher's bookkeeping: contexts and buffers, room (backpressure), deliveries, stats, report."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Generator, Mapping

import attrs

from ._errors import (
    AmbiguousDeliveryError,
    MXOError,
    RejectedActivitiesError,
    ResponseFormatError,
)
from ._models import Activity, ActivityRequest, ActivityResult, Customer, Device

__all__ = [
    "Barriers",
    "Batch",
    "BatchReport",
    "BatcherFullError",
    "BatcherStats",
    "Context",
    "ContextKey",
    "Delivery",
    "Room",
    "Tally",
]

FLUSH_REASONS = ("size", "latency", "pressure", "flush", "close")


class BatcherFullError(MXOError):
    """``submit`` found no room under ``max_pending`` (with ``when_full="raise"``)."""


class Room:
    """A FIFO gate over a count of activities: ``max_pending`` of the batcher.

    ``try_take`` is the fast path (no suspension) and only succeeds when nobody is queued, so
    waiting submits are admitted in arrival order.
    """

    __slots__ = ("_raise_when_full", "_waiters", "limit", "used", "wanted")

    def __init__(self, limit: int, *, raise_when_full: bool) -> None:
        self.limit = limit
        self.used = 0
        self.wanted = 0  # total count of the queued takers
        self._raise_when_full = raise_when_full
        # (count, future): the future gets True once room is reserved, False if closed.
        self._waiters: deque[tuple[int, asyncio.Future[bool]]] = deque()

    @property
    def waiting(self) -> int:
        """How many takers are queued."""
        return len(self._waiters)

    def try_take(self, count: int) -> bool:
        """Take ``count`` if it fits and nobody is queued; never suspends."""
        if self._waiters or self.used + count > self.limit:
            return False
        self.used += count
        return True

    async def take(self, count: int) -> None:
        """Wait in line for ``count``; raise :class:`BatcherFullError` in raise mode."""
        if self._raise_when_full:
            raise BatcherFullError(
                f"the batcher holds {self.used} of max_pending={self.limit} activities"
            )
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        entry = (count, waiter)
        self._waiters.append(entry)
        self.wanted += count
        try:
            admitted = await waiter
        except asyncio.CancelledError:
            if not waiter.cancelled() and waiter.result():
                self.give(count)  # room was reserved for us just before the cancel: hand it on
            elif entry in self._waiters:
                self._waiters.remove(entry)
                self.wanted -= count
                self._admit()
            raise
        if not admitted:
            raise RuntimeError("the batcher closed while submit() was waiting for room")

    def give(self, count: int) -> None:
        """Return ``count`` and admit queued takers that now fit."""
        self.used -= count
        if self._waiters:
            self._admit()

    def close(self) -> None:
        """Turn every queued taker away (their ``take`` raises ``RuntimeError``)."""
        self.wanted = 0
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)

    def _admit(self) -> None:
        waiters = self._waiters
        while waiters:
            count, waiter = waiters[0]
            if waiter.done():  # cancelled; its taker has not run its cleanup yet
                waiters.popleft()
                self.wanted -= count
                continue
            if self.used + count > self.limit:
                return
            waiters.popleft()
            self.wanted -= count
            self.used += count
            waiter.set_result(True)


class Delivery:
    """The fate of one ``Batcher.submit``: ``await delivery`` returns the result or raises.

    It settles once, when the request that carried its activities succeeds or finally fails.
    Unlike a bare :class:`asyncio.Future`, a failed delivery that nobody awaits stays silent:
    failures are counted in the batcher's report and passed to its ``on_error`` handler.
    """

    __slots__ = ("_done", "_error", "_result", "_waiters", "activities")

    def __init__(self, activities: int) -> None:
        self.activities = activities
        """How many activities this submit carried."""
        self._done = False
        self._result: ActivityResult | None = None
        self._error: MXOError | None = None
        # One future per awaiting task (created only when someone awaits before settlement), so a
        # cancelled awaiter never cancels the others; they only ever get ``set_result(None)``.
        self._waiters: list[asyncio.Future[None]] | None = None

    def done(self) -> bool:
        """True once the delivery has settled (succeeded or failed)."""
        return self._done

    def result(self) -> ActivityResult:
        """The result; raises the error if the delivery failed, or if it has not settled yet."""
        if not self._done:
            raise asyncio.InvalidStateError("the delivery has not settled yet")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def exception(self) -> MXOError | None:
        """The error the delivery failed with, or None; raises if it has not settled yet."""
        if not self._done:
            raise asyncio.InvalidStateError("the delivery has not settled yet")
        return self._error

    def __await__(self) -> Generator[object, None, ActivityResult]:
        return self._wait().__await__()

    async def _wait(self) -> ActivityResult:
        if not self._done:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not self._done:
                    self._waiters.remove(waiter)
        return self.result()

    def _settle(self, result: ActivityResult | None, error: MXOError | None) -> None:
        self._done = True
        self._result = result
        self._error = error
        waiters = self._waiters
        if waiters is not None:
            self._waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def __repr__(self) -> str:
        if not self._done:
            state = "pending"
        elif self._error is not None:
            state = f"failed: {type(self._error).__name__}"
        else:
            state = "delivered"
        return f"<Delivery activities={self.activities} {state}>"


def _copy_counts(value: Mapping[str, int]) -> Mapping[str, int]:
    return dict(value)


@attrs.frozen
class BatcherStats:
    """A snapshot of a batcher. Activity counts unless the name says requests.

    ``pending`` is what counts against ``max_pending``: activities buffered or in flight.
    ``flushes`` counts requests by reason: ``size``, ``latency``, ``flush`` or ``close``.
    """

    submitted: int
    pending: int
    buffers: int
    in_flight: int
    waiting_submits: int
    requests: int
    activities_sent: int
    delivered: int
    failed: int
    ambiguous: int
    flushes: Mapping[str, int] = attrs.field(converter=_copy_counts, hash=False)
    rejected: int = 0

    @property
    def activities_per_request(self) -> float:
        """Average request size so far (0.0 before the first request)."""
        return self.activities_sent / self.requests if self.requests else 0.0


@attrs.frozen
class BatchReport:
    """How a closed batcher's activities ended: delivered, rejected, failed or ambiguous.

    ``rejected`` activities were answered by MXO but not processed (listed in the answer's
    ``errors``; :class:`~mxo_async.RejectedActivitiesError`); ``ambiguous`` ones were in a
    request that failed after it may have been applied (:class:`~mxo_async.AmbiguousDeliveryError`),
    or whose success answer could not be read (:class:`~mxo_async.ResponseFormatError`: MXO
    answered 200, so they were stored); ``failed`` ones were certainly not stored, so resending
    them cannot count them twice.
    """

    delivered: int
    failed: int
    ambiguous: int
    requests: int
    submitted: int
    flushes: Mapping[str, int] = attrs.field(converter=_copy_counts, hash=False)
    rejected: int = 0

    @property
    def ok(self) -> bool:
        """True when every submitted activity was delivered."""
        return (
            self.failed == 0
            and self.ambiguous == 0
            and self.rejected == 0
            and self.delivered == self.submitted
        )


class Tally:
    """The batcher's running counts (activities unless named otherwise)."""

    __slots__ = (
        "activities_sent",
        "ambiguous",
        "delivered",
        "failed",
        "flushes",
        "rejected",
        "requests",
        "submitted",
    )

    def __init__(self) -> None:
        self.submitted = 0
        self.requests = 0
        self.activities_sent = 0
        self.delivered = 0
        self.failed = 0
        self.ambiguous = 0
        self.rejected = 0
        self.flushes = dict.fromkeys(FLUSH_REASONS, 0)

    def sent(self, count: int, reason: str) -> None:
        """Count a request of ``count`` activities sent for ``reason``."""
        self.requests += 1
        self.activities_sent += count
        self.flushes[reason] += 1

    def settled(self, count: int, error: MXOError | None) -> None:
        """Count how ``count`` activities of a request ended."""
        if error is None:
            self.delivered += count
        elif isinstance(error, RejectedActivitiesError):
            self.rejected += count
        elif isinstance(error, AmbiguousDeliveryError | ResponseFormatError):
            # A ResponseFormatError comes from a 200 answer: the activities were stored, so
            # counting them as failed (certainly not stored) would invite a duplicate resend.
            self.ambiguous += count
        else:
            self.failed += count

    def stats(
        self, *, pending: int, buffers: int, in_flight: int, waiting_submits: int
    ) -> BatcherStats:
        """A snapshot, completed with the batcher's live gauges."""
        return BatcherStats(
            submitted=self.submitted,
            pending=pending,
            buffers=buffers,
            in_flight=in_flight,
            waiting_submits=waiting_submits,
            requests=self.requests,
            activities_sent=self.activities_sent,
            delivered=self.delivered,
            failed=self.failed,
            ambiguous=self.ambiguous,
            flushes=self.flushes,
            rejected=self.rejected,
        )

    def report(self) -> BatchReport:
        """The final report."""
        return BatchReport(
            delivered=self.delivered,
            failed=self.failed,
            ambiguous=self.ambiguous,
            requests=self.requests,
            submitted=self.submitted,
            flushes=self.flushes,
            rejected=self.rejected,
        )


class _Barrier:
    __slots__ = ("future", "mark", "remaining")

    def __init__(self, mark: int, remaining: int, future: asyncio.Future[None]) -> None:
        self.mark = mark
        self.remaining = remaining
        self.future = future


class Barriers:
    """``flush()`` waits: each one waits for the batches that existed when it began.

    Batches are numbered in creation order (``seq``) and settle in any order, so a barrier
    counts down the settlements of batches numbered below its mark.
    """

    __slots__ = ("_waits",)

    def __init__(self) -> None:
        self._waits: list[_Barrier] = []

    async def wait(self, mark: int, remaining: int) -> None:
        """Return once ``remaining`` batches numbered below ``mark`` have settled."""
        if remaining <= 0:
            return
        barrier = _Barrier(mark, remaining, asyncio.get_running_loop().create_future())
        self._waits.append(barrier)
        try:
            await barrier.future
        finally:
            if barrier in self._waits:
                self._waits.remove(barrier)

    def settled(self, seq: int) -> None:
        """Note that batch ``seq`` settled; release the barriers it completes."""
        if not self._waits:
            return
        for barrier in list(self._waits):
            if seq < barrier.mark:
                barrier.remaining -= 1
                if barrier.remaining == 0:
                    self._waits.remove(barrier)
                    if not barrier.future.done():
                        barrier.future.set_result(None)


ContextKey = tuple[Customer, str, tuple[tuple[str, str], ...], Device | None]


class Context:
    """One customer context (customer, touchpoint, properties, device) and its unsent buffers."""

    __slots__ = ("batches", "busy", "customer", "device", "key", "properties", "touchpoint")

    def __init__(self, key: ContextKey, request: ActivityRequest) -> None:
        self.key = key
        self.customer = request.customer
        self.touchpoint = request.touchpoint
        self.properties = request.properties
        self.device = request.device
        self.batches: deque[Batch] = deque()  # not yet sent; all but the last are due
        self.busy = False  # a request of this context is queued for a slot or in flight


class Batch:
    """One buffer of a context's activities, sent as one request."""

    __slots__ = ("activities", "context", "deadline", "deliveries", "reason", "seq")

    def __init__(self, context: Context, seq: int, deadline: float) -> None:
        self.context = context
        self.seq = seq
        self.deadline = deadline
        self.activities: list[Activity] = []
        self.deliveries: list[Delivery] = []
        self.reason: str | None = None  # set when the buffer is due
