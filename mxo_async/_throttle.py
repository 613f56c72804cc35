"""The client-wide shared throttle: global pause, request rate and adaptive concurrency.

One :class:`Throttle` per client wraps every HTTP attempt (single calls, fan-out and batcher):
``await acquire()`` before it, ``release(signal)`` in a ``finally`` after it. Three mechanisms:

* **Global pause.** ``pause(seconds)`` (a ``Retry-After``) holds every new attempt until it ends.
* **Rate.** A token bucket. ``Limits.rate``/``Limits.burst`` is a fixed ceiling. With
  ``Limits.adaptive`` the throttle also runs an adaptive client-side rate limiter: on loopback a
  single connection already makes ~1000 req/s, so concurrency alone cannot get under a server's
  fixed rate cap. The approach follows botocore's "adaptive" retry mode
  (``botocore/retries/adaptive.py``, ``throttling.py``, ``bucket.py``, Apache-2.0): measure the
  sending rate, on an overload cut the allowed rate to ``beta`` times it, then regrow along a CUBIC
  curve. Unlike botocore, the limiter switches itself off again once demand stays well below the
  allowed rate, so the fast path comes back.
* **Adaptive concurrency (AIMD).** Starts at ``max_connections``; an overload halves it (not below
  ``min_concurrency``), every ``limit`` successes add one.

One overload cuts both the concurrency limit and the rate, at most once per congestion epoch, so a
wave of 429s does not collapse them to the floor: overloads from attempts already in flight at the
cut are ignored (``release`` carries no ticket, so the next ``in_flight`` releases after a cut count
as the old wave), and so are overloads within ``_CUT_COOLDOWN`` of a cut (a fixed- or
sliding-window server keeps answering 429 until its window rolls over). The CUBIC ceiling never
drops below the recently accepted rate, for the same reason. Pushback that does not fall with the
rate (injected faults, a backend refusing a fixed share) is no capacity signal: a ``PushbackGate``
probes each cut, and when the goodput fell with the rate the storm's cuts are undone.

The throttle is pure asyncio: the clock and the sleep are injected, so tests run on virtual time.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import attrs

from ._config import Limits
from ._events import ConcurrencyChanged, Event, EventHandler, Throttled
from ._ratecontrol import BETA, Cubic, PushbackGate, RateMeter, Undo

__all__ = ["Signal", "Throttle", "ThrottleStats"]

_log = logging.getLogger(__name__)

# CUBIC parameters, as in botocore's CubicCalculator (and RFC 8312).
_MIN_RATE = 0.5  # adaptive rate floor, req/s
_MAX_RATE_SCALE = 2.0  # allowed rate never exceeds this multiple of the measured rate
_BURST_SECONDS = 0.1  # adaptive bucket holds this many seconds of tokens (at least one)
_DISABLE_AFTER = 5.0  # s of demand below allowed/_MAX_RATE_SCALE before the limiter switches off
_CUT_COOLDOWN = 0.1  # s; at most one rate cut per cooldown (fixed-window servers 429 in runs)
# Cuts need a share of overloads among the last 64 responses _CUT_PRESSURE above the gate's
# rate-independent baseline: scattered 429s must not ratchet the client down to a crawl.
_CUT_PRESSURE = 0.2
_MIN_CUT_FACTOR = 0.1  # one cut never takes the rate below a tenth of what it was
_EPSILON = 1e-9  # float slack when a sleep ends exactly on the token boundary


class Signal(enum.Enum):
    """How an attempt ended, as far as the throttle cares."""

    OK = "ok"
    """A response that was not an overload: feeds additive increase."""
    OVERLOADED = "overloaded"
    """429 or 503 without ``Retry-After``: the server is pushing back and says nothing more."""
    PAUSED = "paused"
    """429 or 503 with ``Retry-After``: the global pause answers it; no cut of limit or rate."""
    OTHER = "other"
    """Anything else (network error, cancellation): frees the slot, changes nothing."""


@attrs.frozen
class ThrottleStats:
    """A snapshot of the throttle's state. Times are on the throttle's clock, rates in req/s."""

    limit: int
    """Current concurrency limit (adaptive, between ``min_concurrency`` and ``max_connections``)."""
    in_flight: int
    waiting: int
    rate: float | None
    """Currently allowed request rate: the lower of ``Limits.rate`` and the adaptive rate."""
    measured_rate: float
    """Smoothed rate of completed attempts (only measured when adaptive)."""
    paused_until: float | None
    pause_remaining: float
    throttled: int
    """How many ``acquire`` calls had to wait."""
    overloads: int
    """How many attempts ended in :attr:`Signal.OVERLOADED`."""


class _Waiter:
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future


class Throttle:
    """The client-wide limiter; see the module docstring. Not thread-safe: one event loop."""

    def __init__(
        self,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_event: EventHandler | None = None,
        cut_pressure: float = _CUT_PRESSURE,
    ) -> None:
        self._cut_pressure = cut_pressure
        self._clock = clock
        self._sleep = sleep
        self._on_event = on_event
        self._adaptive = limits.adaptive
        self._max = limits.max_connections
        self._min = limits.min_concurrency
        self._limit = limits.max_connections
        self._in_flight = 0
        self._queue: deque[_Waiter] = deque()
        self._head_reason = "concurrency"
        self._paused_until: float | None = None
        self._throttled = 0
        self._overloads = 0
        # AIMD state.
        self._successes = 0
        self._epoch_left = 0  # releases still belonging to the wave before the last cut
        self._pushback = PushbackGate(cut_pressure)
        self._last_cut = -math.inf
        # Token bucket: ``_rate`` is None when no rate applies (the fast path).
        self._explicit_rate = limits.rate
        self._explicit_cap = max(1.0, limits.burst or limits.rate or 1.0)
        self._adaptive_rate: float | None = None
        self._rate: float | None = None
        self._capacity = 1.0
        self._tokens = 0.0
        self._stamp = clock()
        self._meter = RateMeter()
        self._ok_meter = RateMeter()
        self._cubic = Cubic(self._stamp)
        self._slack_since: float | None = None
        self._update_bucket(self._stamp)
        self._tokens = self._capacity  # an explicit bucket starts full

    def __repr__(self) -> str:
        return f"<Throttle limit={self._limit} in_flight={self._in_flight} rate={self._rate}>"

    # -- acquire -----------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take a slot at once if nothing constrains (no queue, pause or rate, a free slot).

        The hot path: no coroutine. When it returns False, ``await acquire()`` instead.
        """
        if (
            self._in_flight < self._limit
            and self._rate is None
            and self._paused_until is None
            and not self._queue
        ):
            self._in_flight += 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait for the global pause to end, a rate token and a concurrency slot (FIFO).

        Does not suspend when nothing constrains. Cancellation at any point takes nothing.
        """
        if not self.try_acquire():
            await self._acquire_slow()

    async def _acquire_slow(self) -> None:
        start = self._clock()
        queue = self._queue
        if queue:
            reason = self._head_reason
        else:
            held = self._held(start)
            if held is None:
                self._grant()
                return
            reason = held[0]
        self._throttled += 1
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future())
        queue.append(waiter)
        try:
            if queue[0] is not waiter:
                await waiter.future  # parked until we reach the head of the line
            while (held := self._held(self._clock())) is not None:
                self._head_reason, delay = held
                if self._head_reason == "concurrency":
                    waiter.future = loop.create_future()
                    await waiter.future  # release() wakes the head
                else:
                    await self._sleep(delay)
            self._grant()
        finally:
            if queue[0] is waiter:
                queue.popleft()
                self._wake_head()
            else:  # cancelled while parked
                queue.remove(waiter)
        if self._on_event is not None:
            self._emit(Throttled(reason, self._clock() - start))

    def _held(self, now: float) -> tuple[str, float] | None:
        """What holds a new attempt back at ``now`` and for how long (0: until a release)."""
        if self._paused_until is not None:
            if now < self._paused_until:
                return "pause", self._paused_until - now
            self._paused_until = None
        if self._in_flight >= self._limit:
            return "concurrency", 0.0
        if self._rate is not None:
            self._refill(now)
            if self._tokens < 1.0 - _EPSILON:
                return "rate", (1.0 - self._tokens) / self._rate
        return None

    def _grant(self) -> None:
        if self._rate is not None:
            self._tokens = max(0.0, self._tokens - 1.0)
        self._in_flight += 1

    def _wake_head(self) -> None:
        if self._queue:
            future = self._queue[0].future
            if not future.done():
                future.set_result(None)

    # -- release -----------------------------------------------------------------------------

    def release(self, signal: Signal) -> None:
        """Free the slot taken by :meth:`acquire` and feed the attempt's outcome to the limiters."""
        if self._in_flight <= 0:
            raise RuntimeError("Throttle.release() called without a matching acquire()")
        self._in_flight -= 1
        if self._adaptive:
            self._adapt(signal)
        elif signal is not Signal.OK and signal is not Signal.OTHER:
            self._overloads += 1
        if self._queue:
            self._wake_head()

    def _adapt(self, signal: Signal) -> None:
        now = self._clock()
        self._meter.record(now)
        stale = self._epoch_left > 0
        if stale:
            self._epoch_left -= 1
        if signal is Signal.OK or signal is Signal.OVERLOADED:
            undo = self._pushback.record(signal is Signal.OVERLOADED, stale, now)
            if undo is not None:
                self._undo_cut(now, undo)
        if signal is Signal.OK:
            self._ok_meter.record(now)
            if self._limit < self._max:
                self._successes += 1
                if self._successes >= self._limit:
                    self._successes = 0
                    self._set_limit(self._limit + 1, "success")
            if self._adaptive_rate is not None and not self._pushback.probing:
                self._grow_rate(now, self._meter.rate(now))  # (a probe measures the cut rate)
        elif signal is Signal.OVERLOADED:
            self._overloads += 1
            if not stale and now - self._last_cut >= _CUT_COOLDOWN:
                pressure = self._pushback.pressure()
                if pressure is not None:
                    self._cut(now, self._meter.rate(now), pressure)
        elif signal is Signal.PAUSED:
            self._overloads += 1  # the server said when to come back: the global pause answers it

    def _cut(self, now: float, measured: float, pressure: float) -> None:
        """Multiplicative decrease of both the concurrency limit and the sending rate."""
        self._pushback.cut(pressure, now, (self._limit, self._adaptive_rate))
        self._epoch_left = self._in_flight
        self._last_cut = now
        self._successes = 0
        self._set_limit(max(self._min, self._limit // 2), "overload")
        current = measured if self._adaptive_rate is None else min(measured, self._adaptive_rate)
        # Never aim below what the server demonstrably accepted: a fixed or sliding window keeps
        # answering 429 until it rolls over, and cutting on each of those would sink W_max.
        current = max(current, self._ok_meter.rate(now))
        # When most answers are 429s, the share that got through is the server's capacity: go
        # straight there instead of cutting by BETA many times while every retry fails.
        factor = BETA if self._cut_pressure == 0 else max(_MIN_CUT_FACTOR, min(BETA, 1 - pressure))
        new_rate = self._cubic.overloaded(current, now, factor)
        self._slack_since = None
        self._set_adaptive_rate(now, min(new_rate, _MAX_RATE_SCALE * measured))
        rate, limit = self._adaptive_rate, self._limit
        _log.debug("overload: measured %.1f req/s, allowed %.1f, limit %d", measured, rate, limit)

    def _undo_cut(self, now: float, undo: Undo) -> None:
        """The pushback did not fall with the rate (no capacity signal): undo the storm's cuts."""
        limit, rate = undo
        self._set_limit(max(limit, self._limit), "restored")
        if rate is not None:
            self._cubic.restore(rate, now)
        self._slack_since = None
        self._set_adaptive_rate(now, rate)
        _log.debug("pushback %.2f does not follow the rate: cuts undone", self._pushback.baseline)

    def _grow_rate(self, now: float, measured: float) -> None:
        target = self._cubic.succeeded(now)
        ceiling = _MAX_RATE_SCALE * measured
        if target <= ceiling:
            self._slack_since = None
        elif self._slack_since is None:
            self._slack_since = now
        elif now - self._slack_since >= _DISABLE_AFTER:
            # Demand has stayed far below what we would allow: the limiter no longer limits.
            self._slack_since = None
            self._set_adaptive_rate(now, None)
            _log.debug("adaptive rate limiter off (measured %.1f req/s)", measured)
            return
        self._set_adaptive_rate(now, min(target, ceiling))

    def _set_limit(self, limit: int, reason: str) -> None:
        if limit != self._limit:
            self._limit = limit
            if self._on_event is not None:
                self._emit(ConcurrencyChanged(limit, reason))

    # -- token bucket ------------------------------------------------------------------------

    def _set_adaptive_rate(self, now: float, rate: float | None) -> None:
        self._adaptive_rate = None if rate is None else max(_MIN_RATE, rate)
        self._update_bucket(now)

    def _update_bucket(self, now: float) -> None:
        """Recompute the bucket from the explicit and adaptive rates, refilling at the old rate."""
        if self._rate is not None:
            self._refill(now)  # tokens earned so far accrue at the rate in force until now
        else:
            self._tokens, self._stamp = 0.0, now  # switching on after an overload: start empty
        rate, capacity = self._explicit_rate, self._explicit_cap
        if self._adaptive_rate is not None:
            adaptive_cap = max(1.0, self._adaptive_rate * _BURST_SECONDS)
            if rate is None or self._adaptive_rate < rate:
                rate = self._adaptive_rate
            capacity = adaptive_cap if self._explicit_rate is None else min(capacity, adaptive_cap)
        self._rate = rate
        self._capacity = capacity
        self._tokens = min(self._tokens, capacity)

    def _refill(self, now: float) -> None:
        assert self._rate is not None
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._stamp = now

    # -- pause, stats, events ----------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Hold every new attempt until ``seconds`` from now; only ever extends a pause."""
        if not seconds > 0:
            return
        until = self._clock() + seconds
        if self._paused_until is None or until > self._paused_until:
            self._paused_until = until

    @property
    def stats(self) -> ThrottleStats:
        """A frozen snapshot of limits, occupancy and counters."""
        now = self._clock()
        until = self._paused_until
        if until is not None and until <= now:
            until = None
        return ThrottleStats(
            limit=self._limit,
            in_flight=self._in_flight,
            waiting=len(self._queue),
            rate=self._rate,
            measured_rate=self._meter.rate(now),
            paused_until=until,
            pause_remaining=0.0 if until is None else until - now,
            throttled=self._throttled,
            overloads=self._overloads,
        )

    def _emit(self, event: Event) -> None:
        # A failing handler must never leak a slot or break release() in a finally block.
        assert self._on_event is not None
        try:
            self._on_event(event)
        except Exception:
            _log.exception("on_event handler failed for %r", event)
