"""Tests for the streaming bounded fan-out engine."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from mxo_async import MXOError, Outcome, ValidationError
from mxo_async._fanout import UNORDERED_SLACK, FanOut, Progress


async def double(item: int) -> tuple[int, int]:
    """A call that succeeds at once with one attempt."""
    await asyncio.sleep(0)
    return item * 2, 1


class Counted:
    """An endless sync source that counts how many items were pulled."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for n in itertools.count():
            self.pulled += 1
            yield n


async def settle() -> None:
    """Let every ready task run until the loop is idle."""
    for _ in range(50):
        await asyncio.sleep(0)


async def collect(fanout: FanOut[int, int]) -> list[Outcome[int, int]]:
    async with fanout as outcomes:
        return [outcome async for outcome in outcomes]


async def test_every_item_settles_once() -> None:
    """Each input item yields exactly one outcome with its result and index."""
    outcomes = await collect(FanOut(range(100), double, concurrency=7))
    assert [(n, n * 2, 1) for n in range(100)] == sorted(
        (o.index, o.result, o.attempts) for o in outcomes
    )


async def test_sync_generator_source() -> None:
    """A sync generator is pulled to the end."""
    outcomes = await collect(FanOut((n for n in range(10)), double, concurrency=3))
    assert list(range(10)) == sorted(o.item for o in outcomes)


async def test_async_generator_source() -> None:
    """An async generator is pulled to the end."""

    async def source() -> AsyncIterator[int]:
        for n in range(10):
            await asyncio.sleep(0)
            yield n

    outcomes = await collect(FanOut(source(), double, concurrency=3))
    assert list(range(10)) == sorted(o.item for o in outcomes)


async def test_concurrency_is_the_most_calls_in_flight() -> None:
    """No more than ``concurrency`` calls run at once."""
    running = peak = 0

    async def call(item: int) -> tuple[int, int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        return item, 1

    await collect(FanOut(range(50), call, concurrency=5))
    assert peak == 5


async def test_source_is_pulled_lazily_within_the_window() -> None:
    """An idle consumer stops an endless source at concurrency + a small slack."""
    source = Counted()
    async with FanOut(source, double, concurrency=4) as outcomes:
        consumed = 0
        async for _ in outcomes:
            consumed += 1
            if consumed == 10:
                break
        await settle()
        assert source.pulled == 10 + 4 + UNORDERED_SLACK


async def test_slow_consumer_pauses_the_source() -> None:
    """While the consumer does not ask, the workers do not pull more."""
    source = Counted()
    async with FanOut(source, double, concurrency=3, window=5) as outcomes:
        await settle()
        before = source.pulled
        await settle()
        assert 5 == before
        assert 5 == source.pulled
        await anext(outcomes)
        await settle()
        assert source.pulled == 6


async def test_ordered_yields_in_input_order() -> None:
    """With ordered=True outcomes come in input order although they settle in reverse."""
    gates = [asyncio.Event() for _ in range(6)]

    async def call(item: int) -> tuple[int, int]:
        await gates[item].wait()
        if item:
            gates[item - 1].set()
        return item, 1

    async with FanOut(range(6), call, concurrency=6, ordered=True) as outcomes:
        await settle()
        gates[5].set()
        received = [o.index async for o in outcomes]
    assert received == [0, 1, 2, 3, 4, 5]


async def test_ordered_window_bounds_work_behind_a_slow_head() -> None:
    """A blocked first item lets the others run only up to the reorder window."""
    head = asyncio.Event()
    source = Counted()

    async def call(item: int) -> tuple[int, int]:
        if item == 0:
            await head.wait()
        return item, 1

    async with FanOut(source, call, concurrency=2, ordered=True, window=6) as outcomes:
        await settle()
        assert source.pulled == 6
        head.set()
        assert (await anext(outcomes)).index == 0


async def test_one_failure_does_not_cancel_the_rest() -> None:
    """A failing item becomes an error outcome carrying its attempts; the others succeed."""

    async def call(item: int) -> tuple[int, int]:
        await asyncio.sleep(0)
        if item == 3:
            error = MXOError("boom")
            error.attempts = 2
            raise error
        return item, 1

    outcomes = {o.index: o for o in await collect(FanOut(range(8), call, concurrency=4))}
    assert not outcomes[3].ok
    assert "boom" == str(outcomes[3].error)
    assert 2 == outcomes[3].attempts
    assert sum(o.ok for o in outcomes.values()) == 7


async def test_unexpected_exception_is_wrapped() -> None:
    """A non-MXOError from the call becomes an MXOError naming its type, with the cause kept."""

    async def call(item: int) -> tuple[int, int]:
        raise KeyError("secret-url")

    [outcome] = await collect(FanOut([1], call))
    assert isinstance(outcome.error, MXOError)
    assert isinstance(outcome.error.__cause__, KeyError)
    assert "KeyError" in str(outcome.error)
    assert "secret-url" not in str(outcome.error)


async def test_cancelled_error_from_call_is_not_swallowed() -> None:
    """A CancelledError raised by the call reaches the consumer after the other items."""

    async def call(item: int) -> tuple[int, int]:
        if item == 1:
            raise asyncio.CancelledError
        return item, 1

    received = []
    with pytest.raises(asyncio.CancelledError):
        async with FanOut(range(3), call, concurrency=1) as outcomes:
            async for outcome in outcomes:
                received.append(outcome.item)
    assert received == [0]


async def test_source_error_is_raised_after_in_flight_items() -> None:
    """A failing source stops intake; pulled items are still yielded, then its error raised."""

    def source() -> Iterator[int]:
        yield from range(5)
        raise ValueError("bad source")

    received = []
    with pytest.raises(ValueError, match="bad source"):
        async with FanOut(source(), double, concurrency=3) as outcomes:
            async for outcome in outcomes:
                received.append(outcome.item)
    assert sorted(received) == [0, 1, 2, 3, 4]


async def test_async_source_error_is_raised_after_in_flight_items() -> None:
    """A failing async source behaves like a failing sync one."""

    async def source() -> AsyncIterator[int]:
        for n in range(4):
            yield n
        raise ValueError("bad async source")

    received = []
    with pytest.raises(ValueError, match="bad async source"):
        async with FanOut(source(), double, concurrency=2) as outcomes:
            async for outcome in outcomes:
                received.append(outcome.item)
    assert sorted(received) == [0, 1, 2, 3]


async def test_early_break_cancels_and_leaves_no_tasks() -> None:
    """Leaving the block early cancels calls in flight, closes the source, leaves no task."""
    cancelled = 0
    closed = False

    async def source() -> AsyncIterator[int]:
        nonlocal closed
        try:
            for n in itertools.count():
                yield n
        finally:
            closed = True

    async def call(item: int) -> tuple[int, int]:
        nonlocal cancelled
        if item == 0:
            return item, 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return item, 1

    async with FanOut(source(), call, concurrency=4) as outcomes:
        async for _ in outcomes:
            break
    assert 4 == cancelled
    assert closed
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def test_exception_in_body_cleans_up() -> None:
    """An exception raised by the consumer propagates and leaves no task behind."""
    with pytest.raises(RuntimeError, match="consumer"):
        async with FanOut(Counted(), double, concurrency=3) as outcomes:
            await anext(outcomes)
            raise RuntimeError("consumer")
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def test_progress_counts_every_item() -> None:
    """Progress ends with each item counted once and on_progress called per settled item."""
    seen: list[int] = []

    async def call(item: int) -> tuple[int, int]:
        if item % 4 == 0:
            raise MXOError("no")
        return item, 1

    fanout = FanOut(
        range(12),
        call,
        concurrency=3,
        skip=lambda item: -1 if item % 4 == 1 else None,
        on_progress=lambda p: seen.append(p.completed),
    )
    await collect(fanout)
    assert Progress(started=9, succeeded=6, failed=3, skipped=3, in_flight=0) == fanout.progress
    assert list(range(1, 13)) == seen


async def test_skipped_items_are_not_called() -> None:
    """An item that skip() settles is yielded with attempts=0 and never reaches the call."""
    called: list[int] = []

    async def call(item: int) -> tuple[int, int]:
        called.append(item)
        return item, 1

    outcomes = await collect(
        FanOut(range(4), call, concurrency=2, skip=lambda n: 100 if n < 2 else None)
    )
    assert sorted(called) == [2, 3]
    assert {o.index: (o.result, o.attempts) for o in outcomes if o.index < 2} == {
        0: (100, 0),
        1: (100, 0),
    }


async def test_on_settled_runs_before_the_outcome_is_yielded() -> None:
    """The consumer only receives an outcome after on_settled finished with it."""
    settled: list[int] = []

    async def on_settled(outcome: Outcome[int, int]) -> None:
        await asyncio.sleep(0)
        settled.append(outcome.index)

    async with FanOut(range(20), double, concurrency=4, on_settled=on_settled) as outcomes:
        async for outcome in outcomes:
            assert outcome.index in settled


async def test_on_settled_failure_is_raised() -> None:
    """If on_settled fails, intake stops and its error reaches the consumer."""

    async def on_settled(outcome: Outcome[int, int]) -> None:
        if outcome.index == 2:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await collect(FanOut(range(10), double, concurrency=1, on_settled=on_settled))


async def test_iterating_without_async_with_is_an_error() -> None:
    """Iterating a fan-out that was not entered raises a clear RuntimeError."""
    with pytest.raises(RuntimeError, match="async with"):
        await anext(FanOut(range(3), double))


async def test_bad_concurrency_is_rejected() -> None:
    """concurrency must be a positive int."""
    with pytest.raises(ValidationError, match="concurrency"):
        FanOut(range(3), double, concurrency=0)
