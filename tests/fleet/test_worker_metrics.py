"""``--metrics-port``: a worker process serves its counters to Prometheus over HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

import mxo_async as mxo
from mxo_async.emulator import Emulator, EmulatorConfig
from mxo_async.redis import ActivityStream, ErasureSweep

from .redis_server import RedisServer
from .workers import GROUP, WorkerProcess, wait_until

STREAM = "{acts}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def scrape(port: int) -> dict[str, float]:
    """Every sample of ``/metrics``, by name and labels (``name{label=value}``); empty while the
    server is not up yet."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as answer,
        ):
            text = await answer.text()
    except aiohttp.ClientConnectionError:
        return {}
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(seed=3)) as emu:
        yield emu


async def test_an_ingestion_worker_serves_its_counters(
    redis: Redis, redis_server: RedisServer, emulator: Emulator
) -> None:
    """A worker started with --metrics-port answers a scrape with the entries it acknowledged,
    their activities, its dead letters by reason and what it holds."""
    stream = ActivityStream(redis, STREAM)
    record = {"touchpoint": "web://x", "proposition": "web", "activity_type": "view"}
    for n in range(40):
        await stream.add({**record, "customer_key": f"c{n % 4}"})
    await redis.xadd(STREAM, {"not-a-record": "x"})  # dead-lettered as invalid
    port = free_port()
    command = ("ingest", "--redis", redis_server.url, "--stream", STREAM, "--group", GROUP)
    worker = await WorkerProcess.start(emulator, "w", *command, "--metrics-port", str(port))
    try:
        samples: dict[str, float] = {}

        async def all_settled() -> bool:
            nonlocal samples
            samples = await scrape(port)
            return (
                samples.get("mxo_worker_ingest_acked_total", 0)
                + samples.get("mxo_worker_ingest_dead_lettered_total{reason=invalid}", 0)
                >= 41
            )

        await wait_until(all_settled, 30)
        worker.terminate()
        code, stats, _ = await worker.finish()
    finally:
        await worker.close()
    wanted = (
        "mxo_worker_ingest_read_total",
        "mxo_worker_ingest_acked_total",
        "mxo_worker_ingest_activities_total",
        "mxo_worker_ingest_dead_lettered_total{reason=invalid}",
        "mxo_worker_ingest_held",
    )
    assert ((41.0, 40.0, 40.0, 1.0, 0.0), 0, 40) == (
        tuple(samples.get(name) for name in wanted),
        code,
        emulator.counters.applied_activities,
    )
    assert stats is not None and 40 == stats["acked"]


async def test_a_sweep_worker_serves_its_counters(
    redis: Redis, redis_server: RedisServer, emulator: Emulator
) -> None:
    """A sweep worker started with --metrics-port answers a scrape with its erased and not-found
    customers."""
    async with mxo.MXOClient(
        emulator.base_url, emulator.site_key, emulator.client_id, emulator.client_secret
    ) as client:
        for n in range(0, 10, 2):  # every other customer exists: erased vs not found
            await client.send_activity(
                mxo.Customer(key=f"k{n}"), "web://x", [mxo.Activity("web", "view")]
            )
    await ErasureSweep(redis, "gdpr").enqueue(mxo.Customer(key=f"k{n}") for n in range(10))
    port = free_port()
    command = ("erase", "--redis", redis_server.url, "--sweep", "gdpr", "--follow")
    worker = await WorkerProcess.start(emulator, "s", *command, "--metrics-port", str(port))
    try:
        samples: dict[str, float] = {}

        async def all_settled() -> bool:
            nonlocal samples
            samples = await scrape(port)
            return samples.get("mxo_worker_erase_settled_total", 0) >= 10

        await wait_until(all_settled, 30)
        worker.terminate()
        code, _, _ = await worker.finish()
    finally:
        await worker.close()
    wanted = ("mxo_worker_erase_erased_total", "mxo_worker_erase_not_found_total")
    assert ((5.0, 5.0), 0) == (tuple(samples.get(name) for name in wanted), code)
