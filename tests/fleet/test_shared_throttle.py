"""SharedThrottle against a scripted limiter: how waiters are let through once permits arrive."""

from __future__ import annotations

import asyncio

import mxo_async as mxo
from mxo_async._fleet import SharedThrottle
from mxo_async._throttle import Signal


class ScriptedLimiter:
    """Shares, holds ``permits`` usable at once, and makes waiters sleep until ``arrive``."""

    def __init__(self) -> None:
        self.permits = 0
        self.arrived = asyncio.Event()

    @property
    def sharing(self) -> bool:
        return True

    def bind(self, throttle: SharedThrottle) -> None:
        pass

    def try_take(self) -> bool:
        if self.permits:
            self.permits -= 1
            return True
        return False

    def wait_time(self, now: float) -> float:
        return 0.0 if self.permits else 1.0

    def take(self) -> None:
        self.permits -= 1

    def ready(self, now: float) -> int:
        return self.permits

    async def wait(self, delay: float) -> None:
        await self.arrived.wait()
        if not self.permits:
            self.arrived.clear()  # spent: the next wait sleeps until permits arrive again

    def record(self, signal: Signal) -> None:
        pass

    def pause(self, seconds: float) -> None:
        pass

    def cut(self, pressure: float) -> None:
        pass

    @property
    def adaptive_rate(self) -> float | None:
        return None

    def restore(self, rate: float | None) -> None:
        pass

    def arrive(self, permits: int) -> None:
        self.permits = permits
        self.arrived.set()


async def test_waiters_go_together_when_a_handful_of_permits_arrives() -> None:
    """Eight queued waiters all acquire within three event-loop turns of eight permits arriving."""
    limiter = ScriptedLimiter()
    throttle = SharedThrottle(mxo.Limits(max_connections=64), limiter)
    waiters = [asyncio.create_task(throttle.acquire()) for _ in range(8)]
    await asyncio.sleep(0)  # every waiter is queued, the head sleeps for a permit
    limiter.arrive(8)
    for _ in range(3):
        await asyncio.sleep(0)
    done = sum(task.done() for task in waiters)
    await asyncio.gather(*waiters)
    assert 8 == done


async def test_waiters_beyond_the_permits_keep_waiting() -> None:
    """With three permits for five waiters, three acquire and two stay queued, in order."""
    limiter = ScriptedLimiter()
    throttle = SharedThrottle(mxo.Limits(max_connections=64), limiter)
    waiters = [asyncio.create_task(throttle.acquire()) for _ in range(5)]
    await asyncio.sleep(0)
    limiter.arrive(3)
    for _ in range(5):
        await asyncio.sleep(0)
    done = [task.done() for task in waiters]
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert [True, True, True, False, False] == done
