"""A fleet of 4 client processes against the emulator and a real redis-server, each its own process."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .redis_server import RedisServer

PROCESSES = 4
ROOT = Path(__file__).resolve().parents[2]
SECRET = "fleet-secret"
RATE = 400.0  # the tenant's rate cap (emulator max_rate) and the fleet's configured rate


class Fleet:
    """The emulator process and the worker processes of one test."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.emulator: asyncio.subprocess.Process | None = None
        self.base_url = ""
        self.workers: list[asyncio.subprocess.Process] = []

    async def start_emulator(self, *args: str) -> None:
        self.emulator = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "mxo_async.emulator", "--port", "0", "--client-secret", SECRET, *args),
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        assert self.emulator.stdout is not None
        banner = (await asyncio.wait_for(self.emulator.stdout.readline(), 20)).decode()
        match = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert match is not None, banner
        self.base_url = match.group()

    async def start_workers(self, phases: Sequence[dict[str, Any]], namespace: str) -> None:
        for process in range(PROCESSES):
            config = {
                "process": process,
                "processes": PROCESSES,
                "base_url": self.base_url,
                "site_key": "ONE-TESTTEST01-0001",
                "client_id": "test-client",
                "secret": SECRET,
                "redis_url": self.redis_url,
                "namespace": namespace,
                "phases": list(phases),
            }
            self.workers.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    *("-m", "tests.fleet.worker", json.dumps(config)),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    cwd=ROOT,
                )
            )

    async def _line(self, worker: asyncio.subprocess.Process) -> str:
        assert worker.stdout is not None
        line = await asyncio.wait_for(worker.stdout.readline(), 60)
        assert line, "a worker died"
        return line.decode()

    async def ready(self) -> None:
        lines = await asyncio.gather(*(self._line(w) for w in self.workers))
        assert ["ready\n"] * PROCESSES == lines

    def go(self) -> None:
        for worker in self.workers:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")

    async def results(self) -> list[dict[str, Any]]:
        lines = await asyncio.gather(*(self._line(w) for w in self.workers))
        return [json.loads(line) for line in lines]

    async def phase(self) -> list[dict[str, Any]]:
        await self.ready()
        self.go()
        return await self.results()

    async def close(self) -> None:
        for process in [*self.workers, self.emulator]:
            if process is not None and process.returncode is None:
                process.terminate()
                await process.wait()


@pytest.fixture
async def fleet(redis_server: RedisServer) -> AsyncIterator[Fleet]:
    fleet = Fleet(redis_server.url)
    try:
        yield fleet
    finally:
        await fleet.close()


def report(name: str, results: list[dict[str, Any]], duration: float) -> tuple[float, float]:
    """Accepted requests per second over the phase's window, and the share of 429 answers."""
    start = min(r["started"] for r in results)
    accepted = sum(start <= t < start + duration for r in results for t in r["accepted"])
    answered = sum(sum(r["statuses"].values()) for r in results)
    rejected = sum(r["statuses"].get("429", 0) for r in results)
    rate, share = accepted / duration, rejected / answered
    trips = sum(r["round_trips"] for r in results) / answered
    print(f"{name}: {rate:.0f} req/s accepted, 429 share {share:.2%}, redis trips/req {trips:.3f}")
    return rate, share


async def test_four_processes_share_the_tenants_rate(fleet: Fleet) -> None:
    """Coordinated, 4 processes hold the rate cap with <= 2 % 429s; alone they overshoot it."""
    await fleet.start_emulator("--faults", f"max_rate={RATE:g}", "--no-keep-activities")
    duration = 3.0
    phase = {"kind": "stream", "duration": duration, "rate": RATE}
    await fleet.start_workers([{**phase, "coordinated": True}, phase], "rate")
    coordinated = await fleet.phase()
    await asyncio.sleep(1.1)  # the emulator's one-second window forgets the first phase
    alone = await fleet.phase()
    rate, share = report("coordinated", coordinated, duration)
    _, alone_share = report("uncoordinated", alone, duration)
    assert rate >= 0.90 * RATE
    assert share <= 0.02
    assert alone_share > 5 * max(share, 0.01)
    assert 0 == sum(r["failed"] for r in coordinated)


async def test_a_retry_after_heard_by_one_pauses_all_four(fleet: Fleet) -> None:
    """After a 429 with Retry-After reaches any process, no process sends until the pause ends."""
    retry_after, slack = 0.5, 0.05
    faults = f"429=0.004,retry_after={retry_after}"
    await fleet.start_emulator("--faults", faults, "--seed", "3", "--no-keep-activities")
    await fleet.start_workers(
        [{"kind": "stream", "duration": 3.0, "rate": RATE, "coordinated": True}], "pause"
    )
    results = await fleet.phase()
    pauses = sorted(t for r in results for t in r["rejected"])
    sends = sorted(t for r in results for t in r["sent"])
    during = [s for t in pauses for s in sends if t + slack <= s <= t + retry_after - slack]
    print(f"pauses heard: {len(pauses)}, requests sent during a pause: {len(during)}")
    assert len(pauses) >= 1
    assert [] == during


async def test_a_shared_token_is_fetched_once_for_the_fleet(fleet: Fleet) -> None:
    """4 processes x 250 concurrent calls on an expired shared token make exactly 1 token request."""
    ttl = 2.0
    await fleet.start_emulator("--token-ttl", str(ttl))
    await fleet.start_workers(
        [{"kind": "burst", "calls": 250, "coordinated": True, "share_token": True}], "token"
    )
    await fleet.ready()
    await asyncio.sleep(ttl + 0.3)  # the token every process holds has expired
    fleet.go()
    results = await fleet.results()
    print([(r["token_requests"], r["fleet"]) for r in results])
    assert 1 == sum(r["token_requests"] for r in results)
    assert PROCESSES * 250 == sum(r["ok"] for r in results)


async def test_killing_redis_never_stops_delivery(fleet: Fleet, redis_server: RedisServer) -> None:
    """Redis SIGKILLed mid-run: every process delivers everything, alone, then shares again."""
    await fleet.start_emulator("--no-keep-activities")
    phase = {"kind": "stream", "duration": 3.5, "rate": 800.0, "coordinated": True}
    await fleet.start_workers([phase], "kill")
    await fleet.ready()
    fleet.go()
    await asyncio.sleep(1.0)
    redis_server.kill()
    await asyncio.sleep(1.0)
    redis_server.start()
    results = await fleet.results()
    summary = []
    for r in results:
        changes = [(sharing, reason if sharing else "down") for _, sharing, reason in r["fleet"]]
        down = next(t for t, sharing, _ in r["fleet"] if not sharing)
        back = [t for t, sharing, _ in r["fleet"] if sharing and t > down]
        alone = sum(down <= t < back[0] for t in r["sent"]) if back else 0
        after = sum(t >= back[0] for t in r["sent"]) if back else 0
        summary.append((r["failed"], changes, alone > 0, after > 0))
        print(
            f"delivered {r['ok']}: {alone} sent alone, {after} after sharing resumed",
            [(round(t - r["started"], 2), s, why) for t, s, why in r["fleet"]],
        )
    expected = (0, [(True, "started"), (False, "down"), (True, "resumed")], True, True)
    assert [expected] * PROCESSES == summary
