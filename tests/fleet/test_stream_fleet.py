"""Fleets of worker processes (the real command line) on a real redis-server, one SIGKILLed mid-run.

The emulator runs in the test process, so the test sees what it applied, entry by entry: each
entry carries one activity whose dynamic proposition is the entry's number.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

import mxo_async as mxo
from mxo_async.cli._demo_fleet import INSTALL
from mxo_async.emulator import Emulator, EmulatorConfig, Faults
from mxo_async.redis import ActivityStream, ErasureSweep

from .redis_server import RedisServer
from .workers import GROUP, ROOT, WorkerProcess, dead_letters, held_by, wait_until

STREAM = "{acts}"
ENTRIES = 30_000
CUSTOMERS = 20_000


def record(n: int) -> str:
    """Entry n: ten consecutive entries share a customer, so the batcher coalesces them."""
    return (
        f'{{"customer_key": "c{n // 10}", "touchpoint": "web://fleet", '
        f'"proposition": "web", "activity_type": "view", "dynamic_proposition": "e{n}"}}'
    )


async def produce(redis: Redis, count: int) -> None:
    for start in range(0, count, 2000):
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(start, min(start + 2000, count)):
                pipe.xadd(STREAM, {"record": record(n)})
            await pipe.execute()


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    # Resets before and after the request is applied: both are ambiguous to the client.
    faults = Faults(reset_before=0.01, reset_after=0.01)
    async with Emulator(EmulatorConfig(seed=7, faults=faults)) as emu:
        yield emu


async def test_three_ingestion_workers_one_killed_lose_nothing(
    redis: Redis, redis_server: RedisServer, emulator: Emulator
) -> None:
    """30,000 entries, 3 workers, one SIGKILLed mid-run: every entry applied or dead-lettered
    with a reason, duplicates at most what the killed worker held, the others exit 0 on SIGTERM."""
    await ActivityStream(redis, STREAM).redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await produce(redis, ENTRIES)
    command = ("ingest", "--redis", redis_server.url, "--stream", STREAM, "--group", GROUP)
    workers = [
        await WorkerProcess.start(
            emulator, f"w{n}", *command, "--claim-after", "2", "--max-pending", "1000"
        )
        for n in range(3)
    ]
    try:

        async def a_third_applied() -> bool:
            return emulator.counters.applied_activities >= ENTRIES // 3

        await wait_until(a_third_applied, 60)
        workers[0].kill()
        await workers[0].process.wait()
        held = await held_by(redis, STREAM, GROUP, "w0")

        async def all_settled() -> bool:
            groups = await redis.xinfo_groups(STREAM)
            pending = await redis.xpending(STREAM, GROUP)
            return bool(groups[0]["lag"] == 0 and pending["pending"] == 0)

        try:
            await wait_until(all_settled, 90)
        finally:
            print(await redis.xinfo_groups(STREAM), await redis.xpending(STREAM, GROUP))
        for worker in workers[1:]:
            worker.terminate()
        finished = [await worker.finish(20) for worker in workers[1:]]
    finally:
        for worker in workers:
            await worker.close()
    applied = Counter(a["dynamicPropositionCode"] for a in emulator.applied_activities())
    dead = await dead_letters(redis, STREAM)
    dead_entries = Counter(json.loads(fields["record"])["dynamic_proposition"] for fields in dead)
    reasons = Counter(fields["reason"] for fields in dead)
    missing = [n for n in range(ENTRIES) if f"e{n}" not in applied and f"e{n}" not in dead_entries]
    duplicates = sum(count - 1 for count in applied.values() if count > 1)
    print(
        f"applied {len(applied):,} entries, duplicates {duplicates}, killed worker held {held}, "
        f"dead-lettered {dict(reasons)}, faults {emulator.counters.faults_injected}"
    )
    assert [] == missing
    assert duplicates <= held
    assert {"ambiguous"} == set(reasons)  # the faults are resets: ambiguous, never dropped
    assert all(count == 1 for count in dead_entries.values())
    assert [0, 0] == [code for code, _, _ in finished]


async def test_three_sweep_workers_survive_a_worker_kill_and_a_redis_kill(
    tmp_path: Path,
) -> None:
    """20,000 customers, 3 sweep workers, one SIGKILLed, then redis-server SIGKILLed and
    restarted (AOF, appendfsync always): each customer once in the export, deletes re-sent at
    most those in flight at the kills."""
    server = RedisServer(tmp_path / "redis", None, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    redis = Redis.from_url(server.url)
    workers: list[WorkerProcess] = []
    try:
        async with Emulator(EmulatorConfig(seed=3)) as emulator:
            for n in range(0, CUSTOMERS, 2):  # every other customer exists: erased vs not found
                emulator.add_customer(f"k{n}")
            sweep = ErasureSweep(redis, "gdpr")
            queued = await sweep.enqueue(mxo.Customer(key=f"k{n}") for n in range(CUSTOMERS))
            again = await sweep.enqueue(mxo.Customer(key=f"k{n}") for n in range(100))
            command = ("erase", "--redis", server.url, "--sweep", "gdpr", "--claim-after", "2")
            workers = [await WorkerProcess.start(emulator, f"s{n}", *command) for n in range(3)]

            async def deleted(count: int) -> bool:
                return emulator.counters.delete_requests >= count

            await wait_until(lambda: deleted(CUSTOMERS // 3), 60)
            workers[0].kill()
            await workers[0].process.wait()
            in_flight = await held_by(redis, sweep.queue, "erasers", "s0")
            await wait_until(lambda: deleted(2 * CUSTOMERS // 3), 60)
            in_flight += (await redis.xpending(sweep.queue, "erasers"))["pending"]
            server.kill()
            await asyncio.sleep(0.5)
            server.start()
            await redis.aclose()  # its connections died with the server
            redis = Redis.from_url(server.url)
            sweep = ErasureSweep(redis, "gdpr")
            finished = [await worker.finish(120) for worker in workers[1:]]
            sent = emulator.counters.delete_requests
            remaining = [n for n in range(CUSTOMERS) if emulator.customer(f"k{n}") is not None]
            status = await sweep.status()
            report = tmp_path / "audit.csv"
            rows_written = await sweep.export(report)
    finally:
        for worker in workers:
            await worker.close()
        await redis.aclose()
        server.stop()
    with report.open(newline="") as file:
        rows = list(csv.DictReader(file))
    per_customer = Counter(row["customer_key"] for row in rows)
    outcomes = Counter(row["outcome"] for row in rows)
    print(f"deletes sent {sent:,}, in flight at the kills {in_flight}, outcomes {dict(outcomes)}")
    assert (CUSTOMERS, 0) == (queued.queued, again.queued)
    assert [0, 0] == [code for code, _, _ in finished]
    assert (CUSTOMERS, {1}) == (rows_written, set(per_customer.values()))
    # A delete re-sent after a kill finds nothing: the lost first one erased the customer.
    seeded = Counter(row["outcome"] for row in rows if int(row["customer_key"][1:]) % 2 == 0)
    unseeded = Counter(row["outcome"] for row in rows if int(row["customer_key"][1:]) % 2 == 1)
    assert {"not_found": CUSTOMERS // 2} == dict(unseeded)
    assert (CUSTOMERS // 2, True) == (seeded.total(), seeded["not_found"] <= sent - CUSTOMERS)
    assert [] == remaining
    assert sent - CUSTOMERS <= in_flight
    assert (0, {}) == (status.pending, {k: v for k, v in status.in_flight.items() if v})


@pytest.fixture
async def slow_emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(faults=Faults(latency=0.3))) as emu:
        yield emu


async def start_holding_worker(
    redis: Redis, redis_server: RedisServer, emulator: Emulator
) -> WorkerProcess:
    """A worker that has read entries it has not settled yet (the emulator answers slowly)."""
    await produce(redis, 2000)
    command = ("ingest", "--redis", redis_server.url, "--stream", STREAM, "--group", GROUP)
    worker = await WorkerProcess.start(emulator, "w", *command, "--max-pending", "500")

    async def holding() -> bool:
        groups = await redis.xinfo_groups(STREAM)
        return bool(groups) and await held_by(redis, STREAM, GROUP, "w") > 0

    await wait_until(holding, 30)
    return worker


async def test_sigterm_settles_what_the_worker_holds_and_exits_0(
    redis: Redis, redis_server: RedisServer, slow_emulator: Emulator
) -> None:
    """SIGTERM: the worker stops reading, settles and acknowledges what it held, exits 0; the
    entries it never read stay in the stream for the others."""
    worker = await start_holding_worker(redis, redis_server, slow_emulator)
    try:
        worker.terminate()
        code, stats, _ = await worker.finish(10)
    finally:
        await worker.close()
    groups = await redis.xinfo_groups(STREAM)
    assert stats is not None
    assert (0, 0, True) == (code, await held_by(redis, STREAM, GROUP, "w"), groups[0]["lag"] > 0)
    assert stats["acked"] == slow_emulator.counters.applied_activities


async def test_a_second_signal_exits_at_once_leaving_entries_pending(
    redis: Redis, redis_server: RedisServer, slow_emulator: Emulator
) -> None:
    """Two SIGTERMs: the worker exits at once (143) and what it held stays pending, to be
    reclaimed."""
    worker = await start_holding_worker(redis, redis_server, slow_emulator)
    try:
        worker.terminate()
        await asyncio.sleep(0.05)
        worker.terminate()
        code, stats, _ = await worker.finish(2)
    finally:
        await worker.close()
    assert (143, None, True) == (code, stats, await held_by(redis, STREAM, GROUP, "w") > 0)


async def test_the_fleet_demo_loses_nothing() -> None:
    """`mxo-async demo --fleet` kills a worker halfway and reports nothing lost (exit 0)."""
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "mxo_async.cli", "demo", "--fleet"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    out, _ = await asyncio.wait_for(demo.communicate(), 120)
    text = out.decode()
    print(text)
    assert (0, True, True) == (
        demo.returncode,
        "lost                      0\n" in text,
        "each customer once        yes\n" in text,
    )


def test_the_fleet_demo_says_how_to_install_a_missing_redis_server(tmp_path: Path) -> None:
    """Without redis-server on PATH the fleet demo prints one line saying how to install it."""
    done = subprocess.run(
        [sys.executable, "-m", "mxo_async.cli", "demo", "--fleet"],
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert (2, [INSTALL]) == (done.returncode, done.stderr.splitlines())
