"""The clock seam: the system clock and the fake clock tests use instead of real time."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from mxo_async._clock import FakeClock, SystemClock


async def test_the_fake_clock_jumps_over_a_long_sleep() -> None:
    """A 30 s sleep takes no real time and moves the fake clock by exactly 30 s."""
    clock = FakeClock(100.0)
    started = time.monotonic()
    await clock.sleep(30.0)
    assert 130.0 == clock.now()
    assert time.monotonic() - started < 1.0


async def test_sleepers_wake_in_deadline_order() -> None:
    """Concurrent sleepers wake at their own deadlines, earliest first."""
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    await asyncio.gather(nap("long", 5.0), nap("short", 1.0), nap("middle", 2.5))
    assert [("short", 1.0), ("middle", 2.5), ("long", 5.0)] == woke


async def test_ready_tasks_run_before_time_jumps() -> None:
    """A task that is not sleeping gets to run before the clock jumps to a deadline."""
    clock = FakeClock()
    seen: list[float] = []

    async def busy() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        seen.append(clock.now())

    await asyncio.gather(clock.sleep(10.0), busy())
    assert [0.0] == seen


async def test_without_autojump_only_advance_moves_time() -> None:
    """With autojump off a sleeper waits until advance() passes its deadline."""
    clock = FakeClock(autojump=False)
    sleeper = asyncio.create_task(clock.sleep(2.0))
    await asyncio.sleep(0)
    await clock.advance(1.0)
    assert not sleeper.done()
    await clock.advance(1.0)
    assert sleeper.done()
    assert 2.0 == clock.now()


async def test_a_cancelled_sleeper_does_not_move_time() -> None:
    """Cancelling a sleep leaves the clock where it was."""
    clock = FakeClock()
    sleeper = asyncio.create_task(clock.sleep(50.0))
    await asyncio.sleep(0)
    sleeper.cancel()
    await asyncio.gather(sleeper, return_exceptions=True)
    await clock.sleep(1.0)
    assert 1.0 == clock.now()


def test_the_wall_clock_follows_the_fake_time() -> None:
    """wall() is the start date plus the fake seconds elapsed."""
    clock = FakeClock(10.0, wall_start=datetime(2026, 5, 1, tzinfo=UTC))
    assert datetime(2026, 5, 1, tzinfo=UTC) == clock.wall()


async def test_the_system_clock_is_real_time() -> None:
    """SystemClock reads time.monotonic and a UTC wall clock."""
    clock = SystemClock()
    before = time.monotonic()
    await clock.sleep(0)
    assert before <= clock.now() <= time.monotonic()
    assert UTC == clock.wall().tzinfo
