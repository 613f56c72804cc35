"""Cancelling a caller at any await point leaves the client usable, no task behind, nothing torn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Unpack

import orjson
import pytest

import mxo_async as mxo
from mxo_async import Activity, ActivityRequest, Customer
from mxo_async.emulator import Emulator, EmulatorConfig, Faults
from tests.fakes import ClientOptions

FAST = mxo.RetryPolicy(max_attempts=5, backoff_base=0.001, backoff_cap=0.005)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(seed=2)) as running:
        yield running


@pytest.fixture
def no_warnings(recwarn: pytest.WarningsRecorder) -> Iterator[None]:
    yield
    gc.collect()
    assert [] == [str(w.message) for w in recwarn]


def client_for(emu: Emulator, **kwargs: Unpack[ClientOptions]) -> mxo.MXOClient:
    options: ClientOptions = {"retry": FAST, **kwargs}
    return mxo.MXOClient(emu.base_url, emu.site_key, emu.client_id, emu.client_secret, **options)


def stray_tasks(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Tasks started since ``before`` and still pending, except the emulator's connection handlers."""
    return {
        t
        for t in asyncio.all_tasks() - before
        if not t.done() and "RequestHandler" not in repr(t.get_coro())
    }


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (bounded: fails instead of hanging)."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - polling the emulator's counters, which have no event
            await asyncio.sleep(0.001)


async def cancelled(task: asyncio.Task[object]) -> bool:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return True
    return False


def send(client: mxo.MXOClient, code: str = "x") -> Coroutine[Any, Any, mxo.ActivityResult]:
    return client.send_activity(Customer.by_key(code), "web://x", [Activity("p", "t", code)])


async def test_cancel_while_waiting_for_the_token(emu: Emulator, no_warnings: None) -> None:
    """A caller cancelled while the token is fetched leaves the refresh running; the next call reuses it."""
    emu.faults = Faults(token_503=1.0, retry_after=0.3)  # the first token attempt backs off 0.3 s
    before = asyncio.all_tasks()
    async with client_for(emu) as client:
        caller = asyncio.create_task(send(client, "first"))
        await until(lambda: emu.counters.token_requests == 1)
        assert await cancelled(caller)
        emu.faults = Faults()
        await send(client, "second")
        token_requests, issued = emu.counters.token_requests, emu.counters.tokens_issued
    # the refresh went on; nothing started a second one
    assert 2 == token_requests
    assert 1 == issued
    assert ["second"] == [a["dynamicPropositionCode"] for a in emu.applied_activities()]
    assert set() == stray_tasks(before)


async def test_cancel_while_waiting_on_the_throttle(emu: Emulator, no_warnings: None) -> None:
    """A call cancelled in the throttle's queue takes no slot: the next call goes through."""
    before = asyncio.all_tasks()
    async with client_for(emu, limits=mxo.Limits(max_connections=1, adaptive=False)) as client:
        await send(client, "warm-up")
        emu.faults = Faults(latency=0.2)
        holder = asyncio.create_task(send(client, "holder"))
        await until(lambda: emu.in_flight == 1)
        waiter = asyncio.create_task(send(client, "waiter"))
        await until(lambda: client.stats.throttle.waiting == 1)
        assert await cancelled(waiter)
        await holder
        emu.faults = Faults()
        await send(client, "after")
        throttle = client.stats.throttle
    assert 0 == throttle.in_flight
    assert 0 == throttle.waiting
    assert ["warm-up", "holder", "after"] == [
        a["dynamicPropositionCode"] for a in emu.applied_activities()
    ]
    assert set() == stray_tasks(before)


async def test_cancel_mid_request(emu: Emulator, no_warnings: None) -> None:
    """A call cancelled while its request is on the wire releases its slot and connection."""
    before = asyncio.all_tasks()
    async with client_for(emu, limits=mxo.Limits(max_connections=1, adaptive=False)) as client:
        await client.delete_customer(Customer.by_key("warm-up"))
        emu.faults = Faults(latency=0.2)
        caller = asyncio.create_task(client.delete_customer(Customer.by_key("k")))
        await until(lambda: emu.in_flight == 1)
        assert await cancelled(caller)
        emu.faults = Faults()
        await send(client, "after")
        throttle = client.stats.throttle
    assert 0 == throttle.in_flight
    assert 0 == throttle.waiting
    assert ["after"] == [a["dynamicPropositionCode"] for a in emu.applied_activities()]
    assert set() == stray_tasks(before)


async def test_cancel_during_retry_backoff(emu: Emulator, no_warnings: None) -> None:
    """A call cancelled while sleeping between attempts stops retrying; the client stays usable."""
    tasks: list[asyncio.Task[object]] = []

    def cancel_on_retry(event: mxo.Event) -> None:
        if isinstance(event, mxo.RetryScheduled) and tasks:
            tasks.pop().cancel()

    policy = mxo.RetryPolicy(max_attempts=5, backoff_base=0.2, backoff_cap=0.2)
    before = asyncio.all_tasks()
    async with client_for(emu, retry=policy, on_event=cancel_on_retry) as client:
        await client.delete_customer(Customer.by_key("warm-up"))
        emu.faults = Faults(status_500=1.0)
        caller = asyncio.create_task(client.delete_customer(Customer.by_key("k")))
        tasks.append(caller)
        with pytest.raises(asyncio.CancelledError):
            await caller
        requests = emu.counters.delete_requests
        emu.faults = Faults()
        await send(client, "after")
        retries = client.stats.retries
    assert 2 == requests  # warm-up and one faulted attempt; no attempt after the cancel
    assert 1 == retries
    assert ["after"] == [a["dynamicPropositionCode"] for a in emu.applied_activities()]
    assert set() == stray_tasks(before)


async def test_cancel_fan_out_consumer(emu: Emulator, no_warnings: None) -> None:
    """Cancelling the task consuming a fan-out stops it; what it saw was stored once, nothing twice."""
    emu.faults = Faults(latency=0.005)
    seen: list[mxo.Outcome[ActivityRequest, mxo.ActivityResult]] = []
    requests = (
        ActivityRequest(Customer.by_key(f"c{n}"), "web://x", [Activity("p", "t", f"item-{n}")])
        for n in range(5000)
    )
    before = asyncio.all_tasks()
    async with client_for(emu) as client:

        async def consume() -> None:
            async with client.send_activities(requests, concurrency=16) as outcomes:
                async for outcome in outcomes:
                    seen.append(outcome)

        consumer = asyncio.create_task(consume())
        await until(lambda: len(seen) >= 50)
        assert await cancelled(consumer)
        await until(lambda: emu.in_flight == 0)
        emu.faults = Faults()
        await send(client, "after")
    stored = [a["dynamicPropositionCode"] for a in emu.applied_activities()]
    assert len(stored) == len(set(stored))  # nothing twice
    assert {f"item-{o.index}" for o in seen if o.ok} <= set(stored)
    assert "after" in stored
    assert len(stored) < 500
    assert set() == stray_tasks(before)


async def test_cancel_submit_waiting_for_room(emu: Emulator, no_warnings: None) -> None:
    """A submit cancelled while the batcher is full takes no room; the rest is delivered."""
    emu.faults = Faults(latency=0.1)
    before = asyncio.all_tasks()
    async with client_for(emu) as client:
        batcher = client.batcher(max_pending=2, max_latency=0.001)
        first = [
            await batcher.submit(Customer.by_key(f"k{n}"), "web://x", Activity("p", "t", f"d{n}"))
            for n in range(2)
        ]
        blocked = asyncio.create_task(
            batcher.submit(Customer.by_key("k2"), "web://x", Activity("p", "t", "cancelled"))
        )
        await until(lambda: batcher.stats.waiting_submits == 1)
        assert await cancelled(blocked)
        emu.faults = Faults()
        later = await batcher.submit(Customer.by_key("k3"), "web://x", Activity("p", "t", "later"))
        report = await batcher.aclose()
        stats = batcher.stats
        results = [await d for d in [*first, later]]
    assert 3 == report.submitted
    assert 3 == report.delivered
    assert 0 == stats.pending
    assert all(r.tid for r in results)
    assert Counter(["d0", "d1", "later"]) == Counter(
        a["dynamicPropositionCode"] for a in emu.applied_activities()
    )
    assert set() == stray_tasks(before)


async def test_cancelling_every_waiter_keeps_the_refresh_in_flight(
    emu: Emulator, no_warnings: None
) -> None:
    """Twenty callers sharing one token refresh all cancelled: the refresh completes and is reused."""
    emu.faults = Faults(token_503=1.0, retry_after=0.2)
    before = asyncio.all_tasks()
    async with client_for(emu) as client:
        callers = [
            asyncio.create_task(client.delete_customer(Customer.by_key(f"k{n}"))) for n in range(20)
        ]
        await until(lambda: emu.counters.token_requests == 1)
        assert all([await cancelled(c) for c in callers])
        emu.faults = Faults()
        await until(lambda: emu.counters.tokens_issued == 1)
        await send(client, "after")
        issued, token_requests = emu.counters.tokens_issued, emu.counters.token_requests
    assert 1 == issued
    assert 2 == token_requests
    assert 0 == emu.counters.delete_requests
    assert set() == stray_tasks(before)


async def test_sweep_cancelled_at_random_points_resumes_to_completion(
    emu: Emulator, tmp_path: Path, no_warnings: None
) -> None:
    """A journaled sweep cancelled ten times at random points leaves whole lines; resuming erases everyone."""
    count = 300
    keys = [f"user{n}@example.com" for n in range(count)]
    for key in keys:
        emu.add_customer(key)
    emu.faults = Faults(latency=0.002)
    journal = tmp_path / "erase.jsonl"
    rng = random.Random(7)
    before = asyncio.all_tasks()
    async with client_for(emu) as client:

        async def sweep() -> list[mxo.Outcome[Customer, mxo.Erasure]]:
            async with client.delete_customers(
                [Customer.by_key(k) for k in keys], concurrency=8, journal=journal
            ) as out:
                return [o async for o in out]

        for _ in range(10):
            task = asyncio.create_task(sweep())
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            data = journal.read_bytes() if journal.exists() else b""
            assert data == b"" or data.endswith(b"\n")  # never a half-written line
            lines = [orjson.loads(line) for line in data.splitlines()]
            for line in lines:  # journaled as erased means really gone
                assert line["outcome"] == "failed" or emu.customer(line["customer"]["key"]) is None
        final = await sweep()
    summary = mxo.summarize_journal(journal)
    assert count == len(final)
    assert 0 == sum(not o.ok for o in final)
    assert not summary.torn_tail
    assert count == summary.customers
    assert 0 == summary.failed
    assert [] == [k for k in keys if emu.customer(k) is not None]
    assert set() == stray_tasks(before)


async def test_sweep_cancelled_while_opening_its_journal_leaks_no_file(
    emu: Emulator, tmp_path: Path
) -> None:
    """Cancelling a sweep while its journal is being opened (in a thread) leaves no file descriptor open."""
    journal = tmp_path / "erase.jsonl"
    journal.write_bytes(b"")

    def journal_fds() -> int:
        fds = os.listdir("/proc/self/fd")
        return sum(1 for fd in fds if os.path.realpath(f"/proc/self/fd/{fd}") == str(journal))

    async with client_for(emu) as client:
        for _ in range(20):

            async def sweep() -> None:
                async with client.delete_customers([Customer.by_key("k")], journal=journal) as out:
                    async for _ in out:
                        pass

            task = asyncio.create_task(sweep())
            await asyncio.sleep(0)  # the sweep is now opening its journal in a worker thread
            assert await cancelled(task)
        await asyncio.sleep(0.05)  # let the worker threads finish opening
        assert 0 == journal_fds()
