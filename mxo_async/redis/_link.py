"""A client's link to the fleet's shared state in Redis (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from .._config import Limits
from .._events import EventHandler, FleetSharingChanged
from .._fleet import SharedThrottle
from .._ratecontrol import RateMeter
from .._throttle import Signal
from . import _scripts
from ._base import FAILURES, CoordinatorError, Keys, text
from ._tokens import TokenStore

if TYPE_CHECKING:
    from ._coordinator import RedisCoordinator

__all__ = ["Link"]

_log = logging.getLogger("mxo_async.redis")

# Every leased permit has a slot (the fleet's permits are spread evenly in time) and may be spent
# from _EARLY before it to _LATE after it; then it is dropped, so a stalled or idle process never
# spends old permits in a burst. In any window of the fleet's traffic that bounds the excess over
# the rate to (_EARLY + _LATE) of it, whatever the processes do.
_EARLY = 0.005
_LATE = 0.02
# So the slots are spaced for the configured rate divided by (1 + _EARLY + _LATE): the permits
# spent in any one-second window (the sliding window a tenant's limit is counted over) had their
# slots in 1 + _EARLY + _LATE seconds, and the fleet stays at or under the rate in every such
# window instead of overshooting it by a few requests at each window's edge (429s in clusters,
# and a cut of the whole fleet's rate).
_PACING = 1 / (1 + _EARLY + _LATE)
# A process ahead of its slots sleeps this much past the next one and wakes to a handful of
# usable permits (the local token bucket wakes per token): a tenth of the wake-ups, the same rate.
_QUANTUM = 0.01
# The next lease is asked for when the current one has less than this share of its permits left,
# so a busy process finds it there when the current one runs out (no stall on a round trip).
_PREFETCH = 0.5
_LEASE_WAIT = 0.5  # s a waiter sleeps at most for a lease in flight (it wakes when it lands)
_MAX_BATCH = 1000
_SYNC_PERIOD = 0.5  # s between reports of a busy process that leases nothing (unlimited rate)
_CUT_COOLDOWN = 1.0  # s; a sliding-window server answers 429 for up to its window after a cut

Sleep = Callable[[float], Awaitable[None]]


class Link:
    """One client's share of the fleet; see the module docstring. One event loop."""

    def __init__(
        self,
        coordinator: RedisCoordinator,
        keys: Keys,
        limits: Limits,
        on_event: EventHandler | None,
        sleep: Sleep,
    ) -> None:
        self._coord = coordinator
        self.keys = keys
        self._on_event = on_event
        self.sleep = sleep
        self.clock = coordinator.clock
        share = coordinator.expected_processes
        self._limit = (limits.rate or 0.0) * _PACING  # the fleet's pace: see _PACING
        self._tau = (
            limits.burst / limits.rate if limits.burst and limits.rate else coordinator.burst
        )
        local_rate = None if limits.rate is None else limits.rate / share
        # Alone, a full bucket of a second's worth would burst on top of the fleet's traffic.
        local_burst = limits.burst / share if limits.burst else (local_rate or 0) * 0.1
        self.local_limits = attrs.evolve(
            limits, rate=local_rate, burst=None if local_rate is None else max(1.0, local_burst)
        )
        self.tokens = TokenStore(self) if coordinator.share_token else None
        self._throttle: SharedThrottle | None = None
        self._sharing = False
        self._down = False
        self._started = False
        self._closed = False
        # Leased permits: ``_count`` slots, the next at ``_next``, one every ``_interval``; and the
        # next lease (start, count, interval), fetched before these run out.
        self._unlimited = not self._limit
        self._rate = self._limit  # the fleet's rate in force (0: unlimited)
        self._count = 0
        self._next = 0.0
        self._interval = 0.0
        self._queued: tuple[float, int, float] | None = None
        self._refill_at = 0  # ask for the next lease when ``_count`` falls to this
        self._meter = RateMeter()  # permits this process took: sizes its leases
        self._sent = 0
        self._ok = 0
        self._want_lease = self._want_report = False
        self._expired = 0
        self._lease_waits = 0
        self._stalled = False
        self._cut_pressure = 0.0
        self._restore = -1.0  # an undone storm's rate to put back (0: none), -1: nothing
        self._last_sync = -math.inf
        self._sync_task: asyncio.Task[None] | None = None
        self._landed: asyncio.Future[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._chores: set[asyncio.Task[Any]] = set()
        self._round_trips = 0
        self._pubsub = not isinstance(coordinator.redis, RedisCluster)
        self._rng = random.Random()  # noqa: S311 - reconnect jitter

    def __repr__(self) -> str:
        return f"<RedisCoordinator link {self.keys.namespace}:{self.keys.tenant} sharing={self._sharing}>"

    # -- FleetLink ---------------------------------------------------------------------------

    @property
    def limiter(self) -> Link:
        return self

    def permits(self, now: float) -> int:
        """Leased permits still usable at ``now`` or later (0 once idle: unused slots expire)."""
        if self._unlimited or self._wait_time(now) < 0:
            return 0
        return self._count + (0 if self._queued is None else self._queued[1])

    @property
    def round_trips(self) -> int:
        """Redis round trips this link made (leases, reports, pauses, token look-ups)."""
        return self._round_trips

    @property
    def expired(self) -> int:
        """Leased permits that expired unused (a process slower than its slots loses them)."""
        return self._expired

    @property
    def lease_waits(self) -> int:
        """Times the throttle found no leased permit left and waited for a lease to land."""
        return self._lease_waits

    async def start(self) -> None:
        """Check Redis and start sharing; unreachable Redis means running alone until it is back.

        Raises:
            CoordinatorError: Redis answers but is older than 6.2 or refuses a script.
        """
        if self._started:
            return
        self._started = True
        try:
            await self._coord.check()
            await self._sync(0)
        except CoordinatorError:
            self._started = False
            raise
        except FAILURES as error:
            self.lost(error)
        else:
            self._resume("started")
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def aclose(self) -> None:
        self._closed = True
        self._sharing = False
        tasks = [self._supervisor, self._listener, self._sync_task, *self._chores]
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._wake()

    # -- SharedLimiter -----------------------------------------------------------------------

    @property
    def sharing(self) -> bool:
        return self._sharing

    def bind(self, throttle: SharedThrottle) -> None:
        self._throttle = throttle

    def try_take(self) -> bool:
        if self._unlimited:
            return True
        if self._wait_time(self.clock()) == 0.0:
            self.take()
            return True
        return False

    def wait_time(self, now: float) -> float:
        if self._unlimited:
            return 0.0
        delay = self._wait_time(now)
        if delay < 0:
            if not self._stalled:  # one stall, however often the head looks while it lasts
                self._stalled = True
                self._lease_waits += 1
            self._want_lease = True
            self._kick()
            return _LEASE_WAIT
        return delay

    def _wait_time(self, now: float) -> float:
        """0: a slot is usable; > 0: wait that long for some; < 0: no slot left."""
        while True:
            if self._count:
                late = now - _LATE - self._next
                if late > 0:  # slots nobody used in time are gone: they belong to the past
                    skip = min(self._count, int(late / self._interval) + 1)
                    self._count -= skip
                    self._expired += skip
                    self._next += skip * self._interval
                if self._count:
                    wait = self._next - _EARLY - now
                    return 0.0 if wait <= 0 else wait + _QUANTUM
            queued = self._queued
            if queued is None:
                return -1.0
            self._queued = None
            self._next, self._count, self._interval = queued
            self._refill_at = math.floor(self._count * _PREFETCH)

    def ready(self, now: float) -> int:
        if self._unlimited:
            return sys.maxsize
        if self._wait_time(now) != 0.0:
            return 0
        return min(self._count, int((now + _EARLY - self._next) / self._interval) + 1)

    def take(self) -> None:
        if not self._unlimited:
            self._stalled = False
            self._count -= 1
            self._next += self._interval
            self._meter.record(self.clock())
            if self._count <= self._refill_at and self._queued is None and not self._want_lease:
                self._want_lease = True
                self._kick()

    async def wait(self, delay: float) -> None:
        landed = self._landed
        if landed is None or landed.done() or not self._sharing:
            await self.sleep(delay)
            return
        await asyncio.wait({landed}, timeout=delay)

    def record(self, signal: Signal) -> None:
        self._sent += 1
        if signal is Signal.OK:
            self._ok += 1
        if not self._started and not self._closed:
            self._started = True  # used without ``async with``: connect in the background
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    def pause(self, seconds: float) -> None:
        if self._sharing:
            ms = max(1, math.ceil(seconds * 1000))
            keys = [self.keys.pause]
            self.chore(self.call(_scripts.PAUSE, keys, [ms, self.keys.channel]))

    def cut(self, pressure: float) -> None:
        self._cut_pressure = max(self._cut_pressure, pressure)
        self._kick()

    @property
    def adaptive_rate(self) -> float | None:
        """The fleet's adaptive rate where it binds (below the configured one), else None."""
        if self._unlimited or (self._limit and self._rate >= self._limit):
            return None
        return self._rate

    def restore(self, rate: float | None) -> None:
        self._restore = 0.0 if rate is None else rate
        self._cut_pressure = 0.0
        self._kick()

    # -- Redis round trips -------------------------------------------------------------------

    async def call(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        self._round_trips += 1
        return await self._coord.run(script, keys, args)

    def chore(self, coro: Awaitable[Any]) -> None:
        """Run a fire-and-forget round trip; a failure switches to running alone."""

        async def run() -> None:
            try:
                await coro
            except FAILURES as error:
                self.lost(error)

        task = asyncio.get_running_loop().create_task(run())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    def _kick(self) -> None:
        """Start a sync unless one is running (it loops while there is something to ask)."""
        if self._sharing and (self._sync_task is None or self._sync_task.done()):
            if self._landed is None or self._landed.done():
                self._landed = asyncio.get_running_loop().create_future()
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_loop())

    async def _sync_loop(self) -> None:
        try:
            while self._sharing and (
                (self._want_lease and self._queued is None)
                or self._cut_pressure
                or self._restore >= 0
                or self._want_report
            ):
                want = self._batch() if self._want_lease and self._queued is None else 0
                self._want_report = False
                await self._sync(want)
        except FAILURES as error:
            self.lost(error)
        finally:
            self._wake()

    def _batch(self) -> int:
        """Permits to ask for: ``lease_span`` seconds of twice this process's recent rate.

        Twice, so a process held back by its leases can grow (a busy one reaches its cap in a
        few leases). Slots that expire unused say nothing about the size: a process slower than
        the fleet's rate loses some whatever it leases. The cap is a fair share of
        ``lease_span`` seconds of the fleet's rate: all busy processes then lease the same
        batches and take turns, one batch each.
        """
        fair = self._rate * self._coord.lease_span / self._coord.expected_processes
        cap = min(_MAX_BATCH, max(1, math.floor(fair))) if self._rate else _MAX_BATCH
        rate = self._meter.rate(self.clock())
        return cap if not rate else max(1, min(cap, math.ceil(2 * rate * self._coord.lease_span)))

    async def _sync(self, want: int) -> None:
        """One SYNC round trip: report, maybe cut, lease ``want`` permits, read rate and pause."""
        sent, ok, pressure, restore = self._sent, self._ok, self._cut_pressure, self._restore
        self._sent = self._ok = 0
        self._cut_pressure = 0.0
        self._restore = -1.0
        keys = self.keys
        args = [
            *(want, self._limit, sent, ok, pressure),
            *(self._tau, _CUT_COOLDOWN, keys.channel, restore),
        ]
        # Slots are placed from when the lease was asked for: Redis granted them at most a round
        # trip later, while a busy event loop may read the reply many milliseconds after that
        # (placed from then, they would overlap the next process's slots).
        asked = self.clock()
        reply = await self.call(_scripts.SYNC, [keys.rate, keys.pause], args)
        granted, start_us, interval_us, pause_ms, rate_milli, _ = (int(x) for x in reply)
        now = self.clock()
        self._last_sync = now
        self._rate = rate_milli / 1000
        self._unlimited = rate_milli == 0
        if want:
            self._want_lease = False
        if pause_ms and self._throttle is not None:
            self._throttle.pause(pause_ms / 1000, broadcast=False)
        if granted and not self._unlimited:
            # Spent after the current lease (its slots come first); promoted by _wait_time.
            self._queued = (asked + start_us / 1_000_000, granted, max(1, interval_us) / 1_000_000)

    def _wake(self) -> None:
        landed = self._landed
        if landed is not None and not landed.done():
            landed.set_result(None)

    # -- sharing, losing it, getting it back -------------------------------------------------

    def lost(self, error: BaseException) -> None:
        if self._closed or not self._started:
            return
        if isinstance(error, ResponseError):
            _log.error("fleet coordinator: Redis refused a script: %s", error)
        self._sharing = False
        self._count = 0
        self._queued = None
        self._want_lease = self._want_report = False
        self._cut_pressure = 0.0
        self._restore = -1.0
        self._wake()
        if not self._down:
            self._down = True  # log and announce once per outage
            share = self.local_limits.rate
            _log.warning(
                "fleet coordinator unreachable (%s): running alone%s until Redis is back",
                type(error).__name__,
                "" if share is None else f" at {share:g} req/s",
            )
            self._emit(FleetSharingChanged(False, type(error).__name__))

    def _resume(self, reason: str) -> None:
        self._sharing = True
        self._down = False
        self._emit(FleetSharingChanged(True, reason))
        if reason != "started":
            _log.warning("fleet coordinator: Redis is back, sharing again")
        if self._pubsub and (self._listener is None or self._listener.done()):
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    def _emit(self, event: FleetSharingChanged) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                _log.exception("on_event handler failed for %r", event)

    async def _supervise(self) -> None:
        """Report while busy (when nothing is leased) and reconnect after a failure."""
        first, longest = self._coord.reconnect
        backoff = first
        while not self._closed:
            if self._sharing:
                backoff = first
                await self.sleep(_SYNC_PERIOD)
                idle = self.clock() - self._last_sync
                if self._sharing and (self._sent or not self._pubsub) and idle >= _SYNC_PERIOD:
                    self._want_report = True
                    self._kick()
                continue
            await self.sleep(backoff * (0.5 + self._rng.random() / 2))
            backoff = min(longest, backoff * 2)
            try:
                # Idle pooled connections still point at the server that went away: drop them
                # before a command trips over one (connections in use are left alone).
                pool = getattr(self._coord.redis, "connection_pool", None)
                if pool is not None:
                    await pool.disconnect(inuse_connections=False)
                await self._coord.check()
                await self._sync(0)
            except CoordinatorError as error:
                _log.error("fleet coordinator: %s", error)
            except FAILURES:
                pass
            else:
                self._resume("resumed")

    async def _listen(self) -> None:
        """Hear other processes' pauses (and cuts) the moment they happen."""
        redis = self._coord.redis
        assert isinstance(redis, Redis)
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.keys.channel)
            while self._sharing:
                message = await pubsub.get_message(timeout=_SYNC_PERIOD)
                if message is None:
                    continue
                data = text(message["data"])
                if data.startswith("pause:") and self._throttle is not None:
                    self._throttle.pause(int(data[6:]) / 1000, broadcast=False)
                elif data == "cut" and self._unlimited:
                    self._want_report = True  # the fleet's rate just became finite: learn it
                    self._kick()
        except FAILURES as error:
            self.lost(error)
        finally:
            with contextlib.suppress(*FAILURES):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
