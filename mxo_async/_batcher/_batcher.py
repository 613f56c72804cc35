"""Coalescing batcher: activities of one customer context share a request.

A *context* is (customer, touchpoint, properties, device). Each context has a queue of buffers; the last
one accepts activities until it holds ``max_activities``. A buffer becomes due when it is full
("size"), when its first activity is ``max_latency`` old ("latency"), when a submit waits for room
under ``max_pending`` ("pressure": the oldest buffers go early), or on ``flush()`` / close.
A due buffer at the head of its queue is sent once the context has no request in flight, so
activities of one context reach MXO in submit order; different contexts are sent concurrently.

One scheduler task handles latency: buffers are created in clock order and share one
``max_latency``, so their deadlines are already sorted and a deque replaces a heap. Buffers sent
early (full, flushed) stay in the deque and are skipped when their deadline comes up.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import attrs

from .._clock import Clock, SystemClock
from .._errors import (
    AmbiguousDeliveryError,
    MXOError,
    RejectedActivitiesError,
    ValidationError,
)
from .._events import BatchFlushed, EventHandler
from .._models import (
    MAX_ACTIVITIES_PER_REQUEST,
    Activity,
    ActivityError,
    ActivityRequest,
    ActivityResult,
    Customer,
    Device,
)
from .._wire import match_rejections
from ._buffers import Barriers, Batch, Context, ContextKey
from ._delivery import Delivery
from ._report import BatcherStats, BatchReport, Counts
from ._room import Room

if TYPE_CHECKING:
    from .._telemetry import Telemetry

__all__ = ["Batcher"]

_log = logging.getLogger("mxo_async")


class Batcher:
    """Coalesce activities per customer context into few ``send`` calls; see the module doc.

    Args:
        send: sends one request (normally ``MXOClient.send_activity``); it retries on its own,
            so an error it raises is final for the activities of that request.
        max_activities: a buffer is sent once it holds this many activities (1-100).
        max_latency: ... or once its first activity is this many seconds old.
        max_pending: most activities buffered or in flight; beyond it ``submit`` waits (FIFO)
            or, with ``when_full="raise"``, raises :class:`BatcherFullError`.
        max_concurrent_requests: optional cap on requests in flight across contexts (the
            client's throttle already limits concurrency; this bounds the batcher on its own).
        on_error: dead-letter hook called with each request that finally failed; exceptions in
            it are logged, never propagated.
        on_event: receives a :class:`~mxo_async._events.BatchFlushed` per request.
        telemetry: the client's (None when off): each batch request's span links to its submits.
        clock: the time seam (a :class:`~mxo_async.testing.FakeClock` in tests); the client
            passes its own.
    """

    def __init__(
        self,
        send: Callable[[ActivityRequest], Awaitable[ActivityResult]],
        *,
        max_activities: int = 100,
        max_latency: float = 0.5,
        max_pending: int = 10_000,
        when_full: Literal["wait", "raise"] = "wait",
        max_concurrent_requests: int | None = None,
        on_error: Callable[[ActivityRequest, MXOError], None] | None = None,
        on_event: EventHandler | None = None,
        clock: Clock | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        if not 1 <= max_activities <= MAX_ACTIVITIES_PER_REQUEST:
            raise ValidationError(
                "max_activities", f"must be 1 to {MAX_ACTIVITIES_PER_REQUEST}, got {max_activities}"
            )
        if not max_latency > 0:
            raise ValidationError("max_latency", f"must be > 0, got {max_latency!r}")
        if max_pending < 1:
            raise ValidationError("max_pending", f"must be >= 1, got {max_pending}")
        if when_full not in ("wait", "raise"):
            raise ValidationError("when_full", f"must be 'wait' or 'raise', got {when_full!r}")
        if max_concurrent_requests is not None and max_concurrent_requests < 1:
            raise ValidationError(
                "max_concurrent_requests", f"must be >= 1 or None, got {max_concurrent_requests}"
            )
        self._send = send
        self._max_activities = max_activities
        self._max_latency = max_latency
        self._room = Room(max_pending, raise_when_full=when_full == "raise")
        self._max_concurrent = max_concurrent_requests
        self._on_error = on_error
        self._on_event = on_event
        clock = clock or SystemClock()
        self._clock = clock.now
        self._sleep = clock.sleep
        self._trace = None if telemetry is None else telemetry.batcher(self)

        self._contexts: dict[ContextKey, Context] = {}
        self._deadlines: deque[Batch] = deque()
        self._scheduler: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready: deque[Batch] = deque()  # due batches waiting for a concurrency slot
        self._barriers = Barriers()
        self._closing = False
        self._report: BatchReport | None = None

        self._seq = 0  # batches created
        self._live = 0  # batches created and not settled
        self._in_flight = 0  # requests being sent
        self._in_flight_activities = 0
        self._open_activities = 0  # in buffers that are not due yet
        self._tally = Counts()

    async def __aenter__(self) -> Batcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Even when the block raised, what was accepted is sent: nothing is dropped silently.
        await self.aclose()

    # -- intake ------------------------------------------------------------------------------

    async def submit(
        self,
        customer: Customer,
        touchpoint: str,
        *activities: Activity,
        properties: Mapping[str, str] | None = None,
        device: Device | None = None,
    ) -> Delivery:
        """Buffer ``activities`` for ``customer`` at ``touchpoint``; return their delivery.

        The activities of one submit always travel in one request (so 1 to 100 of them). Returns
        without suspending while there is room; otherwise waits for room (FIFO) or raises
        :class:`BatcherFullError`. Raises :class:`~mxo_async.ValidationError` for bad input and
        ``RuntimeError`` once the batcher is closing.
        """
        if self._closing:
            raise RuntimeError("the batcher is closed: submit() after aclose()")
        # Validate with the model now, so bad input fails here and not in a later request.
        request = ActivityRequest(
            customer, touchpoint, activities, {} if properties is None else properties, device
        )
        count = len(activities)
        if count > self._room.limit:
            raise ValidationError(
                "activities", f"one submit cannot exceed max_pending={self._room.limit}"
            )
        if not self._room.try_take(count):
            self._relieve(count)
            await self._room.take(count)  # waits (FIFO) or raises BatcherFullError
            if self._closing:  # admitted, but aclose() began before we could buffer
                self._room.give(count)
                raise RuntimeError("the batcher closed while submit() was waiting for room")
        key: ContextKey = (
            request.customer,
            request.touchpoint,
            tuple(sorted(request.properties.items())),
            request.device,
        )
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = Context(key, request)
        batches = context.batches
        batch = batches[-1] if batches else None
        if batch is not None and len(batch.activities) + count > self._max_activities:
            if batch.reason is None:
                self._mark_due(batch, "size")
            batch = None
        if batch is None:
            batch = self._new_batch(context)
        delivery = Delivery(count)
        if self._trace is not None:
            self._trace.submitted(batch.seq)
        batch.activities.extend(request.activities)
        batch.deliveries.append(delivery)
        self._tally.submitted += count
        if batch.reason is None:
            self._open_activities += count
            if len(batch.activities) >= self._max_activities:
                self._mark_due(batch, "size")
        return delivery

    def _relieve(self, count: int) -> None:
        """Send the oldest open buffers early when waiting submits could not fit otherwise.

        Once everything due or in flight settles, only open buffers still hold room; holding
        them until their latency deadline while producers wait would only cost throughput.
        """
        excess = self._open_activities + self._room.wanted + count - self._room.limit
        deadlines = self._deadlines
        while excess > 0 and deadlines:
            batch = deadlines.popleft()
            if batch.reason is None:
                excess -= len(batch.activities)
                self._mark_due(batch, "pressure")

    # -- buffers and the latency scheduler ----------------------------------------------------

    def _new_batch(self, context: Context) -> Batch:
        batch = Batch(context, self._seq, self._clock() + self._max_latency)
        self._seq += 1
        self._live += 1
        context.batches.append(batch)
        self._deadlines.append(batch)
        if self._scheduler is None:
            self._scheduler = asyncio.get_running_loop().create_task(self._schedule())
        return batch

    async def _schedule(self) -> None:
        deadlines = self._deadlines
        try:
            while deadlines:
                batch = deadlines[0]
                if batch.reason is None:
                    delay = batch.deadline - self._clock()
                    if delay > 0:
                        await self._sleep(delay)
                        continue
                    self._mark_due(batch, "latency")
                deadlines.popleft()
        finally:
            self._scheduler = None

    def _mark_due(self, batch: Batch, reason: str) -> None:
        self._open_activities -= len(batch.activities)
        batch.reason = reason
        context = batch.context
        if not context.busy and context.batches[0] is batch:
            self._dispatch(context)

    # -- sending ------------------------------------------------------------------------------

    def _dispatch(self, context: Context) -> None:
        """Send the head batch of an idle context (or queue it for a concurrency slot)."""
        batch = context.batches.popleft()
        context.busy = True
        limit = self._max_concurrent
        if limit is not None and (self._ready or self._in_flight >= limit):
            self._ready.append(batch)
        else:
            self._start(batch)

    def _start(self, batch: Batch) -> None:
        count = len(batch.activities)
        reason = batch.reason or "flush"
        self._in_flight += 1
        self._in_flight_activities += count
        self._tally.sent(count, reason)
        if self._on_event is not None:
            try:
                self._on_event(BatchFlushed(count, reason))
            except Exception:
                _log.exception("on_event handler failed")
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: Batch) -> None:
        context = batch.context
        request = ActivityRequest(
            context.customer,
            context.touchpoint,
            batch.activities,
            context.properties,
            context.device,
        )
        if self._trace is not None:
            self._trace.sending(batch.seq, batch.reason, len(batch.activities))
        try:
            result = await self._send(request)
        except MXOError as exc:
            self._settle(batch, request, None, exc)
        except asyncio.CancelledError:
            # It may have reached MXO: ambiguous, never silently dropped.
            cancelled = AmbiguousDeliveryError("the request was cancelled while in flight")
            self._settle(batch, request, None, cancelled)
            raise
        except Exception as exc:
            _log.exception("send raised a non-MXOError for customer %s", context.customer.masked())
            failure = MXOError(f"send raised {type(exc).__name__}: {exc}")
            failure.__cause__ = exc
            self._settle(batch, request, None, failure)
        else:
            self._settle(batch, request, result, None)

    def _settle(
        self,
        batch: Batch,
        request: ActivityRequest,
        result: ActivityResult | None,
        error: MXOError | None,
    ) -> None:
        count = len(batch.activities)
        if isinstance(error, RejectedActivitiesError):
            self._settle_rejected(batch, request, error)
        else:
            self._tally.settled(count, error)
            for delivery in batch.deliveries:
                delivery._settle(result, error)
            if error is not None:
                self._report_error(request, error)
        # Release the payload now: the scheduler may keep this shell until its deadline.
        batch.activities = []
        batch.deliveries = []
        self._in_flight -= 1
        self._in_flight_activities -= count
        self._live -= 1
        self._room.give(count)
        self._barriers.settled(batch.seq)

        context = batch.context
        context.busy = False
        if context.batches:
            if context.batches[0].reason is not None:
                self._dispatch(context)
        elif self._contexts.get(context.key) is context:
            del self._contexts[context.key]
        while self._ready and (
            self._max_concurrent is None or self._in_flight < self._max_concurrent
        ):
            self._start(self._ready.popleft())

    def _settle_rejected(
        self, batch: Batch, request: ActivityRequest, error: RejectedActivitiesError
    ) -> None:
        """Fail exactly the deliveries whose activities MXO did not process; the rest succeed."""
        rejections = match_rejections(request.activities, error.rejected)
        tid = error.result.tid
        delivered = ActivityResult(tid)
        rejected: list[Activity] = []
        errors: list[ActivityError] = []
        start = 0
        for delivery in batch.deliveries:
            own = [
                rejections[index]
                for index in range(start, start + delivery.activities)
                if index in rejections
            ]
            if own:
                delivery._settle(None, RejectedActivitiesError(ActivityResult(tid, tuple(own))))
            else:
                delivery._settle(delivered, None)
            start += delivery.activities
        for index in sorted(rejections):
            rejected.append(request.activities[index])
            errors.append(rejections[index])
        self._tally.settled(len(request.activities) - len(rejected), None)
        self._tally.settled(len(rejected), error)
        if rejected:
            self._report_error(
                attrs.evolve(request, activities=tuple(rejected)),
                RejectedActivitiesError(ActivityResult(tid, tuple(errors))),
            )

    def _report_error(self, request: ActivityRequest, error: MXOError) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(request, error)
        except Exception:
            _log.exception("on_error handler failed for customer %s", request.customer.masked())

    # -- flush, close, stats ------------------------------------------------------------------

    async def _flush(self, reason: str) -> None:
        for context in list(self._contexts.values()):
            # Only the last buffer of a context can be open: the others are full, hence due.
            if context.batches and context.batches[-1].reason is None:
                self._mark_due(context.batches[-1], reason)
        # Every live batch was created before this point; later ones get a higher seq.
        await self._barriers.wait(self._seq, self._live)

    async def flush(self) -> None:
        """Send every buffer now and wait until everything submitted so far has settled."""
        await self._flush("flush")

    async def aclose(self) -> BatchReport:
        """Stop intake, send everything, settle every delivery and return the report.

        Submits still waiting for room raise ``RuntimeError``. Safe to call more than once.
        """
        if self._report is not None:
            return self._report
        self._closing = True
        self._room.close()
        await self._flush("close")
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.cancel()
            await asyncio.wait({scheduler})
        self._deadlines.clear()
        if self._report is None:
            self._report = self._tally.report()
        return self._report

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` has been called (intake is stopped)."""
        return self._closing

    @property
    def stats(self) -> BatcherStats:
        """A snapshot of the counters (activities unless named otherwise)."""
        return self._tally.stats(
            pending=self._room.used,
            buffers=self._live - self._in_flight,
            in_flight=self._in_flight,
            waiting_submits=self._room.waiting,
        )

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        room = getattr(self, "_room", None)
        if room is None or getattr(self, "_report", None) is not None:
            return
        unsent = room.used - getattr(self, "_in_flight_activities", 0)
        if unsent > 0:
            _warn(
                f"Batcher garbage-collected with {unsent} unsent activities: "
                "use 'async with' or await aclose()",
                ResourceWarning,
                source=self,
            )
