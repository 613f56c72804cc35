"""Fan-out and erasure sweeps against the emulator: exactly-once, outcomes, resume, convergence."""

from __future__ import annotations

import asyncio
import gc
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Unpack

import orjson
import pytest

import mxo_async as mxo
from mxo_async import Activity, ActivityRequest, Customer
from mxo_async.emulator import Emulator, EmulatorConfig, Faults
from tests.fakes import ClientOptions


def client_for(emu: Emulator, **kwargs: Unpack[ClientOptions]) -> mxo.MXOClient:
    return mxo.MXOClient(emu.base_url, emu.site_key, emu.client_id, emu.client_secret, **kwargs)


def requests(count: int) -> Iterator[ActivityRequest]:
    for n in range(count):
        yield ActivityRequest(
            Customer.by_key(f"user{n}@example.com"),
            "web://shop",
            [Activity("shop", "view", f"item-{n}")],
        )


def applied_codes(emu: Emulator) -> list[str]:
    """The stored activities' dynamic proposition codes, sorted (every activity sent has one)."""
    codes = [a["dynamicPropositionCode"] for a in emu.applied_activities()]
    assert None not in codes
    return sorted(code for code in codes if code is not None)


async def test_storm_of_429_and_503_delivers_everything_exactly_once() -> None:
    """Under a 429/503 storm every request is applied exactly once and every outcome is a success."""
    faults = Faults(status_429=0.2, status_503=0.15, status_429_bare=0.05, retry_after=0.01)
    async with Emulator(EmulatorConfig(faults=faults, seed=11)) as emu:
        async with client_for(
            emu, retry=mxo.RetryPolicy(max_attempts=10, backoff_base=0.005)
        ) as client:
            async with client.send_activities(requests(1000), concurrency=32) as outcomes:
                results = [o async for o in outcomes]
            retries = client.stats.retries
    assert 1000 == len(results)
    assert 0 == sum(not o.ok for o in results)
    assert sorted(f"item-{n}" for n in range(1000)) == applied_codes(emu)
    assert retries > 100


@pytest.mark.parametrize("retry_ambiguous", [False, True])
async def test_resets_give_every_item_exactly_one_outcome(retry_ambiguous: bool) -> None:
    """With resets before and after applying, each item has one outcome; only ambiguous ones may differ."""
    faults = Faults(reset_before=0.1, reset_after=0.1)
    policy = mxo.RetryPolicy(max_attempts=8, backoff_base=0.001, retry_ambiguous=retry_ambiguous)
    async with Emulator(EmulatorConfig(faults=faults, seed=5)) as emu:
        async with client_for(emu, retry=policy) as client:
            async with client.send_activities(requests(500), concurrency=16) as outcomes:
                results = [o async for o in outcomes]
    assert sorted(range(500)) == sorted(o.index for o in results)
    applied = applied_codes(emu)
    counts = {code: applied.count(code) for code in set(applied)}
    for o in results:
        code = f"item-{o.index}"
        if o.ok:
            # Delivered: at least once; more than once only when an earlier attempt was reset after applying.
            assert counts.get(code, 0) >= 1
            if not retry_ambiguous:
                assert 1 == counts[code]
        else:
            assert isinstance(o.error, mxo.AmbiguousDeliveryError), o.error
    if not retry_ambiguous:
        assert any(isinstance(o.error, mxo.AmbiguousDeliveryError) for o in results)
        # Nothing was applied twice, and nothing applied is unaccounted for.
        assert all(n == 1 for n in counts.values())
    else:
        assert all(o.ok for o in results)


async def test_breaking_out_early_leaves_no_tasks(recwarn: pytest.WarningsRecorder) -> None:
    """Leaving the loop after a few outcomes cancels the rest cleanly."""
    async with Emulator(EmulatorConfig(faults=Faults(latency=0.01))) as emu:
        async with client_for(emu) as client:
            before = asyncio.all_tasks()
            async with client.send_activities(requests(10_000), concurrency=20) as outcomes:
                seen = 0
                async for _ in outcomes:
                    seen += 1
                    if seen == 25:
                        break
            await asyncio.sleep(0)
            # The emulator shares this loop: its connection handlers are not the client's tasks.
            leftover = {
                t
                for t in asyncio.all_tasks() - before
                if "RequestHandler" not in repr(t.get_coro())
            }
    gc.collect()
    assert 25 == seen
    assert set() == leftover
    assert [] == [str(w.message) for w in recwarn]
    assert emu.counters.activity_requests < 200


async def test_adaptive_throttle_converges_under_a_rate_cap() -> None:
    """Against a server answering 429 (no Retry-After) above 300 req/s, default settings deliver everything."""
    async with Emulator(EmulatorConfig(faults=Faults(max_rate=300))) as emu:
        async with client_for(emu) as client:
            async with client.send_activities(requests(3000), concurrency=64) as outcomes:
                results = [o async for o in outcomes]
            stats = client.stats
    assert 0 == sum(not o.ok for o in results)
    assert 3000 == emu.counters.applied_activities
    # Converged: 429s are a small fraction of all requests, not a retry storm.
    assert stats.statuses.get(429, 0) < 0.5 * 3000


SWEEP = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    import mxo_async as mxo

    async def main():
        base_url, site_key, client_id, secret, journal, count, kill_after = sys.argv[1:]
        customers = (mxo.Customer.by_key(f"user{n}@example.com") for n in range(int(count)))
        async with mxo.MXOClient(base_url, site_key, client_id, secret) as client:
            async with client.delete_customers(customers, concurrency=8, journal=journal) as out:
                seen = 0
                async for _ in out:
                    seen += 1
                    if seen == int(kill_after):
                        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


async def test_sigkilled_sweep_resumes_from_its_journal(tmp_path: Path) -> None:
    """A sweep killed with SIGKILL and re-run ends with everyone erased, re-sending only in-flight deletes."""
    count, kill_after, concurrency = 300, 120, 8
    journal = tmp_path / "erase.jsonl"
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    async with Emulator(EmulatorConfig(faults=Faults(latency=0.002))) as emu:
        for n in range(count):
            emu.add_customer(key=f"user{n}@example.com")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), emu.base_url, emu.site_key, emu.client_id,
            emu.client_secret, str(journal), str(count), str(kill_after),
        )  # fmt: skip
        assert -9 == await proc.wait()
        first_run = emu.counters.delete_requests
        async with client_for(emu) as client:
            customers = (Customer.by_key(f"user{n}@example.com") for n in range(count))
            async with client.delete_customers(
                customers, concurrency=concurrency, journal=journal
            ) as out:
                results = [o async for o in out]
        remaining = [
            n for n in range(count) if emu.customer(key=f"user{n}@example.com") is not None
        ]
        total_deletes = emu.counters.delete_requests
    summary = mxo.summarize_journal(journal)
    assert kill_after <= first_run < count
    assert [] == remaining
    assert count == summary.customers
    assert 0 == summary.failed
    assert count == summary.erased + summary.not_found
    assert all(o.ok for o in results)
    assert count == len(results)
    # Only the deletes in flight when the process died (not yet journaled) were sent twice.
    assert total_deletes - count <= concurrency
    lines = [orjson.loads(line) for line in journal.read_bytes().splitlines()]
    assert {f"user{n}@example.com" for n in range(count)} == {
        line["customer"]["key"] for line in lines
    }
