"""The watchdog: per-attempt time limits for many tasks on one loop timer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mxo_async._watchdog import Watchdog

from .fakes import recorded_timers


class TimedOut(Exception):
    pass


async def limited(watchdog: Watchdog, seconds: float, work: float) -> str:
    """The documented pattern: ``work`` seconds of sleeping under a ``seconds`` limit."""
    watch = watchdog.start(seconds)
    try:
        await asyncio.sleep(work)
        return "done"
    except asyncio.CancelledError:
        if watchdog.settle(watch):
            raise TimedOut from None
        raise
    finally:
        watchdog.settle(watch)


@pytest.fixture
async def timers() -> AsyncIterator[list[tuple[float, object]]]:
    """The timers armed on the loop during the test: (seconds from now, callback)."""
    with recorded_timers(asyncio.get_running_loop()) as armed:
        yield armed


def watchdog_timers(armed: list[tuple[float, object]]) -> list[float]:
    """The delays of the watchdog's own timers among ``armed`` (sleeps arm timers too)."""
    return [delay for delay, callback in armed if getattr(callback, "__name__", "") == "_fire"]


async def test_an_attempt_past_its_limit_is_cancelled_and_reported() -> None:
    watchdog = Watchdog()
    with pytest.raises(TimedOut):
        await limited(watchdog, 0.02, 5.0)
    assert 0 == len(watchdog)
    task = asyncio.current_task()
    assert task is not None
    assert 0 == task.cancelling()  # the cancellation was withdrawn


async def test_an_attempt_within_its_limit_is_untouched() -> None:
    watchdog = Watchdog()
    assert "done" == await limited(watchdog, 5.0, 0.001)
    assert 0 == len(watchdog)
    await asyncio.sleep(0.001)  # no cancellation left pending for a later await


async def test_someone_elses_cancellation_is_never_turned_into_a_timeout() -> None:
    watchdog = Watchdog()
    task = asyncio.create_task(limited(watchdog, 5.0, 5.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0 == len(watchdog)


async def test_an_outer_cancellation_racing_the_limit_still_propagates() -> None:
    watchdog = Watchdog()
    pending: list[int] = []

    async def body() -> None:
        watch = watchdog.start(0.02)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pending.append(watch.cancelling())
            if watchdog.settle(watch):
                raise TimedOut from None
            raise
        finally:
            watchdog.settle(watch)

    task = asyncio.create_task(body())
    await asyncio.sleep(0)
    expiry = watchdog.expiry(task)
    assert expiry is not None
    # Someone else cancels the task in the very loop iteration in which its limit expires.
    asyncio.get_running_loop().call_at(expiry, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [2] == pending  # both the limit and the outsider cancelled; the outsider's stands


async def test_a_fired_watch_whose_body_swallowed_the_cancel_leaves_nothing_pending() -> None:
    watchdog = Watchdog()
    watch = watchdog.start(0.01)
    try:
        await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        pass  # code that swallows cancellation (as some libraries do)
    finally:
        fired = watchdog.settle(watch)
    assert fired
    task = asyncio.current_task()
    assert task is not None
    assert 0 == task.cancelling()
    assert watchdog.expiry(task) is None
    await asyncio.sleep(0.001)


async def test_settle_reports_a_timeout_once() -> None:
    watchdog = Watchdog()
    watch = watchdog.start(0.01)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.sleep(1)
    assert watchdog.settle(watch)
    assert not watchdog.settle(watch)


async def test_many_attempts_share_one_timer(timers: list[tuple[float, object]]) -> None:
    watchdog = Watchdog()
    results = await asyncio.gather(*(limited(watchdog, 30.0, 0.001) for _ in range(500)))
    assert ["done"] * 500 == results
    # Armed for the first expiry; the other 499 fit behind it.
    assert 1 == len(watchdog_timers(timers))
    watchdog.close()


async def test_a_shorter_limit_rearms_the_timer_and_each_fires_in_turn(
    timers: list[tuple[float, object]],
) -> None:
    watchdog = Watchdog()
    slow = asyncio.create_task(limited(watchdog, 0.2, 5.0))
    await asyncio.sleep(0)
    fast = asyncio.create_task(limited(watchdog, 0.02, 5.0))
    with pytest.raises(TimedOut):
        await fast
    assert not slow.done()  # the timer fired for the fast one only, then re-armed
    with pytest.raises(TimedOut):
        await slow
    # slow, fast (earlier: re-armed), then slow again after fast fired
    assert 3 == len(watchdog_timers(timers))


async def test_close_drops_the_timer(timers: list[tuple[float, object]]) -> None:
    watchdog = Watchdog()
    task = asyncio.create_task(limited(watchdog, 0.02, 0.1))
    await asyncio.sleep(0)
    watchdog.close()
    assert "done" == await task  # no longer limited


async def test_start_outside_a_task_is_an_error() -> None:
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def callback() -> None:  # runs on the loop, but in no task
        try:
            Watchdog().start(1.0)
        except RuntimeError as error:
            outcome.set_result(error)
        else:
            outcome.set_result(None)

    asyncio.get_running_loop().call_soon(callback)
    assert "inside a task" in str(await outcome)


async def test_one_task_holds_one_watch_at_a_time() -> None:
    watchdog = Watchdog()
    watch = watchdog.start(5.0)
    with pytest.raises(RuntimeError, match="already watched"):
        watchdog.start(1.0)
    assert not watchdog.settle(watch)
    watchdog.settle(watchdog.start(1.0))  # settled, the task can be watched again
    watchdog.close()
