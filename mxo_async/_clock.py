"""Time, through one seam: every part of the client that reads the time or waits takes a Clock.

The throttle, the token manager, the retry loop and the batcher read ``now()`` and wait with
``sleep()``; the wire module takes the wall-clock time as an argument (``wall()``). Tests pass a
:class:`FakeClock` and never wait on real time. Only the per-attempt time limit stays on the event
loop's clock: it bounds real I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """Monotonic time, waiting, and the wall-clock time."""

    def now(self) -> float:
        """Monotonic seconds (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    def wall(self) -> datetime:
        """The current UTC time (for HTTP-dates and journal lines)."""
        ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """Like ``asyncio.timeout(seconds)`` on this clock: ``TimeoutError`` when time is up."""
        ...


class SystemClock:
    """The real clocks: ``time.monotonic``, ``asyncio.sleep`` and ``datetime.now(UTC)``."""

    __slots__ = ()

    # The functions themselves, not wrappers: ``now`` is read several times per request, and a
    # wrapper's Python frame would cost more than the clock read.
    now = staticmethod(time.monotonic)
    sleep = staticmethod(asyncio.sleep)
    wall = staticmethod(functools.partial(datetime.now, UTC))

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


# Loop iterations a sleep lets pass before the fake clock jumps to the next deadline, so tasks that
# are ready (not sleeping) run first: enough for a few chained awaits, as trio's autojump does.
_SETTLE_HOPS = 8


class FakeClock:
    """A clock for tests: time moves only when sleepers are waiting and everyone else is done.

    With ``autojump`` (the default), a sleep lets other ready tasks run for a few loop iterations,
    then time jumps to the earliest pending deadline and that sleeper wakes: a test of a 30 s
    backoff takes microseconds, and wake-ups happen in deadline order. Without it, time moves only
    through :meth:`advance`.

    Args:
        start: the initial monotonic time.
        wall_start: the wall-clock time at ``start``.
        autojump: jump to the next deadline when sleepers wait (else only ``advance`` moves time).
    """

    def __init__(
        self,
        start: float = 0.0,
        *,
        wall_start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
        autojump: bool = True,
    ) -> None:
        self._now = start
        self._start = start
        self._wall_start = wall_start
        self.autojump = autojump
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._jump_pending = False
        self.slept: list[float] = []
        """Every delay asked of :meth:`sleep`, in call order."""

    def now(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return self._wall_start + timedelta(seconds=self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await self._wait(seconds)

    async def _wait(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), waiter))
        if self.autojump and not self._jump_pending:
            self._jump_pending = True
            self._jump_later(loop, _SETTLE_HOPS)
        await waiter

    @contextlib.asynccontextmanager
    async def timeout(self, seconds: float) -> AsyncIterator[None]:
        """``asyncio.timeout`` in fake time: the body is cancelled when ``seconds`` have passed."""
        task = asyncio.current_task()
        assert task is not None
        expired = False

        async def alarm() -> None:
            nonlocal expired
            await self._wait(seconds)  # not in ``slept``: nobody asked to sleep
            expired = True
            task.cancel()

        ringer = asyncio.get_running_loop().create_task(alarm())
        try:
            yield
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            ringer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ringer

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper whose deadline has come."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, waiter = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not waiter.done():
                waiter.set_result(None)
            for _ in range(_SETTLE_HOPS):
                await asyncio.sleep(0)
        self._now = max(self._now, target)
        for _ in range(_SETTLE_HOPS):
            await asyncio.sleep(0)

    @property
    def sleepers(self) -> int:
        """How many sleeps are pending."""
        return sum(1 for _, _, waiter in self._sleepers if not waiter.done())

    def _jump_later(self, loop: asyncio.AbstractEventLoop, hops: int) -> None:
        """After ``hops`` loop iterations, wake the earliest sleeper; one chain at a time, so a
        woken task runs (and may sleep again) before time moves on."""
        if hops:
            loop.call_soon(self._jump_later, loop, hops - 1)
            return
        while self._sleepers and self._sleepers[0][2].done():  # cancelled sleepers
            heapq.heappop(self._sleepers)
        if not self._sleepers or loop.is_closed() or not self.autojump:
            self._jump_pending = False
            return
        deadline, _, waiter = heapq.heappop(self._sleepers)
        self._now = max(self._now, deadline)
        waiter.set_result(None)
        self._jump_later(loop, _SETTLE_HOPS)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now:.3f}, sleepers={self.sleepers})"
