"""ActivityStream, IngestWorker and ErasureSweep in this process, against a real redis-server and
the emulator (the multi-process fleets are in test_stream_fleet.py)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import attrs
import pytest
from aiohttp import web
from click.testing import CliRunner
from redis.asyncio import Redis

import mxo_async as mxo
from mxo_async.cli import cli
from mxo_async.emulator import Emulator
from mxo_async.redis import (
    ActivityStream,
    ErasureSweep,
    IngestWorker,
    WorkerStats,
    WorkerStopped,
)
from mxo_async.redis._metrics import serve_metrics
from mxo_async.redis._records import encode_record, entry_time, parse_entry

from .redis_server import RedisServer, free_port
from .workers import dead_letters, wait_until

FAST_RETRY = mxo.RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.02)


def request(n: int, customer: str = "alice") -> mxo.ActivityRequest:
    return mxo.ActivityRequest(
        mxo.Customer(key=customer), "web://shop", [mxo.Activity("web", "view", f"e{n}")]
    )


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator() as emu:
        yield emu


def client_of(base_url: str, emu: Emulator, retry: mxo.RetryPolicy = FAST_RETRY) -> mxo.MXOClient:
    return mxo.MXOClient(base_url, emu.site_key, emu.client_id, emu.client_secret, retry=retry)


async def run_until(worker: IngestWorker, client: mxo.MXOClient, settled: int) -> WorkerStats:
    """Run ``worker`` until it settled ``settled`` entries, then stop it and return its stats."""
    task = asyncio.create_task(worker.run(client))

    async def enough() -> bool:
        assert not task.done() or task.exception() is None
        return worker.stats.settled >= settled

    await wait_until(enough, 30, poll=0.02)
    worker.stop()
    return await task


def test_a_request_survives_the_record_round_trip() -> None:
    """encode_record writes a send NDJSON line that the send parser reads back as the request."""
    original = mxo.ActivityRequest(
        mxo.Customer(tid="t-1", key="k", identifiers={"email": "a@x.com"}),
        "web://shop",
        [mxo.Activity("web", "view", "d", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))],
        {"campaign": "x"},
        mxo.Device("App", "SMARTPHONE", "IOS", latitude=1.5),
    )
    assert original == parse_entry(encode_record(original), "1-0", "customerkey")


def test_an_activity_without_timestamp_gets_its_entry_time() -> None:
    """The stream ID's milliseconds become the timestamp of activities that have none."""
    parsed = parse_entry(encode_record(request(1)), "1767225600123-7", "customerkey")
    assert datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC) == parsed.activities[0].timestamp
    assert parsed.activities[0].timestamp == entry_time("1767225600123-0")


async def test_add_refuses_a_record_outside_the_send_schema(redis: Redis) -> None:
    """A record the send parser rejects fails at add, before it reaches the stream."""
    with pytest.raises(ValueError, match="proposition"):
        await ActivityStream(redis, "s").add({"customer_key": "a", "touchpoint": "web://x"})
    assert 0 == await redis.exists("s")


async def test_add_trims_the_stream_approximately_with_maxlen(redis: Redis) -> None:
    """With maxlen the stream stays near that length (XADD MAXLEN ~)."""
    stream = ActivityStream(redis, "s", maxlen=10)
    for n in range(500):
        await stream.add(request(n))
    assert await redis.xlen("s") < 200


async def test_delivered_entries_are_acknowledged_and_invalid_ones_dead_lettered(
    redis: Redis, emulator: Emulator
) -> None:
    """Valid entries are applied and acknowledged; an invalid one is in the dead-letter stream
    with its reason, and nothing stays pending."""
    stream = ActivityStream(redis, "s")
    for n in range(20):
        await stream.add(request(n))
    await redis.xadd("s", {"record": '{"customer_key": "a"}'})
    async with client_of(emulator.base_url, emulator) as client:
        stats = await run_until(stream.worker("g", "c"), client, 21)
    dead = await dead_letters(redis, "s")
    assert (20, 20) == (stats.acked, emulator.counters.applied_activities)
    assert [("invalid", '{"customer_key": "a"}')] == [(d["reason"], d["record"]) for d in dead]
    assert 0 == (await redis.xpending("s", "g"))["pending"]


async def test_stop_settles_and_acknowledges_what_the_worker_holds(
    redis: Redis, emulator: Emulator
) -> None:
    """stop() while entries wait in the batcher: they are sent and acknowledged before run returns."""
    stream = ActivityStream(redis, "s")
    for n in range(50):
        await stream.add(request(n, f"c{n % 5}"))
    async with client_of(emulator.base_url, emulator) as client:
        worker = stream.worker("g", "c", max_latency=30.0)  # nothing leaves by latency
        task = asyncio.create_task(worker.run(client))

        async def all_read() -> bool:
            return worker.stats.read == 50

        await wait_until(all_read, 10, poll=0.01)
        worker.stop()
        stats = await task
    assert (50, 0, 50) == (
        stats.acked,
        (await redis.xpending("s", "g"))["pending"],
        emulator.counters.applied_activities,
    )


@pytest.fixture
async def poisoning_proxy(emulator: Emulator) -> AsyncIterator[str]:
    """A proxy in front of the emulator: 503 to a request mentioning 'poison503' (never applied),
    500 to one mentioning 'poison500' (maybe applied: ambiguous)."""
    session = aiohttp.ClientSession()

    async def forward(incoming: web.Request) -> web.Response:
        body = await incoming.read()
        for status in (500, 503):
            if f"poison{status}".encode() in body:
                return web.json_response({"errorCode": "GENERAL", "message": "x"}, status=status)
        headers = {k: v for k, v in incoming.headers.items() if k.lower() != "host"}
        url = emulator.base_url + incoming.path_qs
        async with session.request(incoming.method, url, data=body, headers=headers) as answer:
            payload = await answer.read()
            return web.Response(
                body=payload, status=answer.status, content_type=answer.content_type
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await session.close()


@pytest.mark.parametrize(
    ("status", "at_least_once"), [(503, False), (500, True)], ids=["503", "500-at-least-once"]
)
async def test_an_entry_always_failing_with_5xx_is_dead_lettered_as_poison(
    redis: Redis, emulator: Emulator, poisoning_proxy: str, status: int, at_least_once: bool
) -> None:
    """An entry whose request always fails with a 5xx the client retries is dead-lettered after
    max_deliveries deliveries, and the entries after it are delivered."""
    stream = ActivityStream(redis, "s")
    await stream.add(request(0, f"poison{status}"))
    for n in range(1, 31):
        await stream.add(request(n))
    retry = attrs.evolve(FAST_RETRY, retry_ambiguous=at_least_once)
    async with client_of(poisoning_proxy, emulator, retry) as client:
        worker = stream.worker(
            "g", "c", claim_after=0.2, max_deliveries=3, block=0.05, at_least_once=at_least_once
        )
        stats = await run_until(worker, client, 31)
    dead = await dead_letters(redis, "s")
    assert [("poison", True)] == [(d["reason"], "delivered 3 times" in d["error"]) for d in dead]
    assert (30, 2, 30) == (stats.acked, stats.retried, emulator.counters.applied_activities)


async def test_an_ambiguous_500_is_dead_lettered_at_once_under_the_default_rule(
    redis: Redis, emulator: Emulator, poisoning_proxy: str
) -> None:
    """A 500 may have been applied: by default the entry is dead-lettered as ambiguous, unretried."""
    stream = ActivityStream(redis, "s")
    await stream.add(request(0, "poison500"))
    async with client_of(poisoning_proxy, emulator) as client:
        stats = await run_until(stream.worker("g", "c"), client, 1)
    dead = await dead_letters(redis, "s")
    assert ["ambiguous"] == [d["reason"] for d in dead]
    assert (1, 0) == (stats.read, stats.retried)


async def test_a_second_worker_reclaims_the_entries_of_a_silent_one(
    redis: Redis, emulator: Emulator
) -> None:
    """Entries read by a consumer that never acknowledges them are reclaimed after claim_after."""
    stream = ActivityStream(redis, "s")
    for n in range(10):
        await stream.add(request(n))
    await redis.xgroup_create("s", "g", id="0")
    await redis.xreadgroup("g", "dead-worker", {"s": ">"}, count=10)  # read, then "died"
    async with client_of(emulator.base_url, emulator) as client:
        worker = stream.worker("g", "c", claim_after=0.1, block=0.05)
        stats = await run_until(worker, client, 10)
    assert (10, 10, 10) == (stats.acked, stats.reclaimed, emulator.counters.applied_activities)


async def test_refused_credentials_stop_the_worker_with_nothing_acknowledged(
    redis: Redis, emulator: Emulator
) -> None:
    """A refused secret would fail every entry alike: run raises WorkerStopped and every entry
    it read stays pending (none dead-lettered)."""
    stream = ActivityStream(redis, "s")
    for n in range(5):
        await stream.add(request(n))
    client = mxo.MXOClient(emulator.base_url, emulator.site_key, emulator.client_id, "wrong")
    async with client:
        with pytest.raises(WorkerStopped):
            await stream.worker("g", "c", block=0.05).run(client)
    pending = (await redis.xpending("s", "g"))["pending"]
    assert (5, []) == (pending, await dead_letters(redis, "s"))


# -- erasure sweeps --------------------------------------------------------------------------


async def test_enqueue_is_idempotent_and_reports_progress(redis: Redis) -> None:
    """A customer enqueued twice (in one call or two) is queued once; progress counts both."""
    sweep = ErasureSweep(redis, "s")
    seen: list[tuple[int, int]] = []
    customers = [mxo.Customer(key=f"k{n % 700}") for n in range(1000)]
    first = await sweep.enqueue(customers, on_progress=lambda p: seen.append((p.read, p.queued)))
    second = await sweep.enqueue(customers[:10])
    assert ((1000, 700, 300), (10, 0, 10)) == (
        (first.read, first.queued, first.duplicates),
        (second.read, second.queued, second.duplicates),
    )
    assert [(500, 500), (1000, 700)] == seen
    assert 700 == await redis.xlen(sweep.queue)


async def test_a_sweep_records_each_outcome_and_reports_its_status(
    redis: Redis, emulator: Emulator
) -> None:
    """Erased, not found and failed customers are counted; the sweep is done."""
    emulator.add_customer("present")
    sweep = ErasureSweep(redis, "s")
    unnameable = mxo.Customer(identifiers={"email": "a@x.com", "phone": "1"})  # no DELETE names it
    await sweep.enqueue([mxo.Customer(key="present"), mxo.Customer(key="absent"), unnameable])
    async with client_of(emulator.base_url, emulator) as client:
        await sweep.work(client, block=0.05)
    status = await sweep.status()
    assert (3, 0, 1, 1, 1, True) == (
        status.customers,
        status.pending,
        status.erased,
        status.not_found,
        status.failed,
        status.done,
    )


async def test_retry_failed_queues_failed_customers_again(redis: Redis, emulator: Emulator) -> None:
    """After retry_failed, a customer that failed is erased by the next work and counted once."""
    emulator.add_customer("k")
    sweep = ErasureSweep(redis, "s")
    await sweep.enqueue([mxo.Customer(key="k")])
    async with client_of("http://127.0.0.1:9", emulator) as unreachable:
        await sweep.work(unreachable, block=0.05)
    failed = await sweep.status()
    queued = await sweep.retry_failed()
    async with client_of(emulator.base_url, emulator) as client:
        await sweep.work(client, block=0.05)
    after = await sweep.status()
    assert ((1, 0), 1, (1, 0)) == (
        (failed.failed, failed.erased),
        queued,
        (after.erased, after.failed),
    )


async def test_the_export_has_the_journals_audit_format(
    redis: Redis, emulator: Emulator, tmp_path: Path
) -> None:
    """A sweep's export and the file journal's export of the same sweep have the same columns
    and the same rows, apart from the time and the TIDs the emulator gave."""
    keys = [f"k{n}" for n in range(5)]
    for key in keys[:3]:
        emulator.add_customer(key)
    customers = [mxo.Customer(key=key) for key in keys]
    sweep = ErasureSweep(redis, "s")
    await sweep.enqueue(customers)
    async with client_of(emulator.base_url, emulator) as client:
        await sweep.work(client, block=0.05)
        for key in keys[:3]:
            emulator.add_customer(key)
        journal = tmp_path / "journal.ndjson"
        async with client.delete_customers(customers, journal=journal) as outcomes:
            async for _ in outcomes:
                pass
    ours, theirs = io.StringIO(), io.StringIO()
    await sweep.export(ours, "csv")
    mxo.export_journal(journal, theirs, "csv")

    def rows(text: str) -> list[dict[str, str]]:
        table = list(csv.DictReader(io.StringIO(text)))
        for row in table:
            row.pop("time")
            row.pop("tids")
        return sorted(table, key=lambda row: row["customer_key"])

    assert rows(theirs.getvalue()) == rows(ours.getvalue())
    assert theirs.getvalue().splitlines()[0] == ours.getvalue().splitlines()[0]


# -- command line and metrics --------------------------------------------------------------------


def test_sweep_commands_enqueue_report_status_and_export(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """sweep enqueue reads a customer file (twice: queued once), status --json reports it and
    export writes the journal's CSV header."""
    customers = tmp_path / "customers.txt"
    customers.write_text("alice\nbob\n# a comment\nalice\n")
    runner = CliRunner()
    url = ("--redis", redis_server.url)
    first = runner.invoke(cli, ["sweep", "enqueue", "s", str(customers), *url])
    second = runner.invoke(cli, ["sweep", "enqueue", "s", str(customers), *url])
    status = runner.invoke(cli, ["sweep", "status", "s", "--json", *url])
    report = tmp_path / "audit.csv"
    export = runner.invoke(cli, ["sweep", "export", "s", "--report", str(report), *url])
    assert (0, 0, 0, 0) == (first.exit_code, second.exit_code, status.exit_code, export.exit_code)
    assert "2 customers queued" in first.output
    assert "0 customers queued in sweep s (3 already queued" in second.output
    state = json.loads(status.output)
    assert (2, 2, False) == (state["customers"], state["pending"], state["done"])
    assert report.read_text().startswith("customer_tid,customer_key,outcome,tids,")


def test_metrics_serve_a_workers_counters(tmp_path: Path) -> None:
    """serve_metrics exposes a worker's counters in Prometheus text format."""
    stats = WorkerStats(acked=7)
    stats.dead_lettered["invalid"] += 2
    port = free_port()
    serve_metrics(port, "ingest", stats.as_dict)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert "mxo_worker_ingest_acked_total 7.0" in text
    assert 'mxo_worker_ingest_dead_lettered_total{reason="invalid"} 2.0' in text
