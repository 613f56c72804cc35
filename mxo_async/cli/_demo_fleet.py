"""``mxo-async demo --fleet``: a fleet of worker processes on Redis Streams, one killed halfway.

Starts a redis-server (AOF, ``appendfsync always``) in a temporary directory and the emulator in
this process with a rate cap; produces 20,000 activities into an :class:`ActivityStream` (ten per
customer in a row, so the workers' batchers coalesce them) and runs 3 ``worker ingest``
processes sharing the rate through a RedisCoordinator, SIGKILLing one halfway; then queues a
2,000-customer :class:`ErasureSweep` and runs 3 ``worker erase`` processes, SIGKILLing one
halfway. It prints what the emulator applied against what was produced (nothing lost,
duplicates counted) and the sweep's outcomes, each customer once.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import click
import orjson

from mxo_async import Customer
from mxo_async.emulator import Emulator, EmulatorConfig, Faults

from ._status import ExitCode

__all__ = ["run_fleet_demo"]

ACTIVITIES = 20_000
SWEEP = 2_000
WORKERS = 3
RATE = 1_500.0
STREAM, GROUP, SWEEP_NAME = "{demo}:activities", "demo", "demo-sweep"
INSTALL = (
    "mxo-async demo --fleet needs redis-server on PATH: apt-get install redis-server "
    "(macOS: brew install redis)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _say(text: str) -> None:
    click.echo(text, err=True)


def run_fleet_demo(faults: Faults | None, seed: int) -> ExitCode:
    """Run the fleet demo; exit status 0 when nothing was lost and every customer settled."""
    binary = shutil.which("redis-server")
    if binary is None:
        click.echo(INSTALL, err=True)
        return ExitCode.USAGE
    try:
        import redis  # noqa: F401 - only to say how to install it
    except ImportError:
        click.echo('mxo-async demo --fleet needs: pip install "mxo-async[redis]"', err=True)
        return ExitCode.USAGE
    with tempfile.TemporaryDirectory(prefix="mxo-fleet-demo-") as directory:
        port = _free_port()
        server = subprocess.Popen(  # noqa: S603 - redis-server from PATH, our arguments
            [
                *(binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory),
                *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
                *("--daemonize", "no", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            limits = attrs.evolve(faults or Faults(), max_rate=RATE)
            return asyncio.run(_Demo(f"redis://127.0.0.1:{port}/0", limits, seed, directory).run())
        finally:
            server.terminate()
            server.wait()


class _Demo:
    def __init__(self, redis_url: str, faults: Faults, seed: int, directory: str) -> None:
        self.redis_url = redis_url
        self.faults = faults
        self.seed = seed
        self.directory = Path(directory)

    async def run(self) -> ExitCode:
        from redis.asyncio import Redis

        self.redis = Redis.from_url(self.redis_url)
        try:
            await self._wait_for_redis()
            config = EmulatorConfig(seed=self.seed, faults=self.faults)
            async with Emulator(config) as emulator:
                _say(f"redis-server at {self.redis_url} (appendonly yes, appendfsync always)")
                _say(f"emulator at {emulator.base_url}, capped at {RATE:,.0f} requests/s")
                lost = await self._ingest(emulator)
                unsettled = await self._sweep(emulator)
        finally:
            await self.redis.aclose()
        return ExitCode.OK if lost == 0 and unsettled == 0 else ExitCode.NOT_DELIVERED

    async def _wait_for_redis(self) -> None:
        for _ in range(200):
            with contextlib.suppress(Exception):
                await self.redis.ping()
                return
            await asyncio.sleep(0.05)
        raise click.ClickException("redis-server did not start")

    def _worker(self, emulator: Emulator, name: str, *command: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - this interpreter, our own command line
            [
                *(sys.executable, "-m", "mxo_async.cli", "--base-url", emulator.base_url),
                *("--site-key", emulator.site_key, "--client-id", emulator.client_id),
                *("--client-secret", emulator.client_secret, "worker", *command),
                *("--redis", self.redis_url, "--consumer", name, "--claim-after", "3"),
                *("--namespace", "demo", "--rate", f"{RATE:g}", "--status-interval", "3"),
            ],
            stdout=subprocess.DEVNULL,
        )

    async def _until(self, done: Callable[[], Awaitable[bool]]) -> None:
        # The state is in other processes (Redis, the workers): there is no event to await.
        while not await done():  # noqa: ASYNC110
            await asyncio.sleep(0.2)

    async def _ingest(self, emulator: Emulator) -> int:
        from mxo_async.redis import ActivityStream

        stream = ActivityStream(self.redis, STREAM)
        started = time.monotonic()
        for start in range(0, ACTIVITIES, 50):  # 50 adds in flight: 50 connections at most
            await asyncio.gather(*(stream.add(_record(n)) for n in range(start, start + 50)))
        _say(f"produced {ACTIVITIES:,} activities in {time.monotonic() - started:.1f} s")
        workers = [self._worker(emulator, f"ingest-{n}", "ingest", "--stream", STREAM,
                                "--group", GROUP) for n in range(WORKERS)]  # fmt: skip
        try:

            async def halfway() -> bool:
                return emulator.counters.applied_activities >= ACTIVITIES // 2

            async def drained() -> bool:
                groups = await self.redis.xinfo_groups(STREAM)
                pending = await self.redis.xpending(STREAM, GROUP)
                return bool(groups) and groups[0]["lag"] == 0 and pending["pending"] == 0

            await self._until(halfway)
            held = len(
                await self.redis.xpending_range(
                    STREAM, GROUP, "-", "+", 1_000_000, consumername="ingest-0"
                )
            )
            workers[0].send_signal(signal.SIGKILL)
            _say(f"SIGKILLed worker ingest-0 halfway, holding {held:,} unacknowledged entries")
            await self._until(drained)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.terminate()
            for worker in workers:
                worker.wait()
        applied = Counter(a["dynamicPropositionCode"] for a in emulator.applied_activities())
        dead: Any = await self.redis.xrange(f"{STREAM}:dead")
        dead_entries = {orjson.loads(f[b"record"])["dynamic_proposition"] for _, f in dead}
        reasons = Counter(f[b"reason"].decode() for _, f in dead)
        lost = sum(
            1 for n in range(ACTIVITIES) if f"e{n}" not in applied and f"e{n}" not in dead_entries
        )
        duplicates = sum(count - 1 for count in applied.values() if count > 1)
        click.echo(f"Ingestion: {ACTIVITIES:,} activities produced, sent by {WORKERS} workers")
        click.echo(f"  applied by the emulator   {len(applied):,} distinct activities")
        click.echo(
            f"  duplicates                {duplicates:,} (<= {held:,} held by the killed worker)"
        )
        why = f" {dict(reasons)}" if reasons else ""
        click.echo(f"  dead-lettered             {len(dead_entries):,}{why}")
        click.echo(f"  lost                      {lost:,}")
        return lost

    async def _sweep(self, emulator: Emulator) -> int:
        from mxo_async.redis import ErasureSweep

        keys = [f"gdpr-{n}" for n in range(SWEEP)]
        for key in keys[::2]:  # half of them exist: erased; the others: not found
            emulator.add_customer(key)
        sweep = ErasureSweep(self.redis, SWEEP_NAME)
        await sweep.enqueue(Customer(key=key) for key in keys)
        await sweep.enqueue(Customer(key=key) for key in keys[:100])  # harmless: queued once
        sent_before = emulator.counters.delete_requests
        workers = [self._worker(emulator, f"erase-{n}", "erase", "--sweep", SWEEP_NAME)
                   for n in range(WORKERS)]  # fmt: skip
        try:

            async def halfway() -> bool:
                return emulator.counters.delete_requests - sent_before >= SWEEP // 2

            await self._until(halfway)
            workers[1].send_signal(signal.SIGKILL)
            _say("SIGKILLed worker erase-1 halfway")
            for worker in workers:
                await asyncio.to_thread(worker.wait)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.terminate()
                    worker.wait()
        report = self.directory / "sweep.csv"
        await sweep.export(report)
        with report.open(newline="") as file:
            rows = list(csv.DictReader(file))
        outcomes = Counter(row["outcome"] for row in rows)
        once = len({row["customer_key"] for row in rows}) == len(rows) == SWEEP
        sent = emulator.counters.delete_requests - sent_before
        status = await sweep.status()
        click.echo(f"Erasure sweep: {SWEEP:,} customers (queued twice, queued once)")
        click.echo(f"  outcomes in the export    {dict(outcomes)}")
        click.echo(f"  each customer once        {'yes' if once else 'NO'}")
        click.echo(
            f"  deletes sent              {sent:,} ({sent - SWEEP:,} re-sent after the kill)"
        )
        return status.pending + sum(status.in_flight.values()) + (0 if once else 1)


def _record(n: int) -> dict[str, Any]:
    return {
        "customer_key": f"fleet-{n // 10 % 2000}",
        "touchpoint": "web://fleet-demo",
        "proposition": "web",
        "activity_type": "view",
        "dynamic_proposition": f"e{n}",
    }
