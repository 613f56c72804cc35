"""One ingestion worker process over a 200,000-entry backlog: its memory stays bounded.

The worker holds at most ``--max-pending`` entries whatever the backlog, so its RSS levels off
once it is warm: sampled from ``/proc/PID/status`` as it drains the stream, RSS in the last
quarter of the run is at most a few MiB above RSS at the first quarter.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from redis.asyncio import Redis

from .redis_server import RedisServer
from .workers import ROOT, wait_until

ENTRIES = 200_000
STREAM, GROUP = "{mem}", "mem"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_one_worker_drains_200000_entries_in_bounded_memory(
    redis: Redis, redis_server: RedisServer
) -> None:
    """RSS in the last quarter of a 200,000-entry run stays within 8 MiB of the first quarter's."""
    for start in range(0, ENTRIES, 5000):
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(start, start + 5000):
                record = (
                    f'{{"customer_key": "c{n // 10 % 5000}", "touchpoint": "web://m", '
                    f'"proposition": "web", "activity_type": "view"}}'
                )
                pipe.xadd(STREAM, {"record": record})
            await pipe.execute()
    emulator = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "mxo_async.emulator", "--port", "0", "--no-keep-activities"),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    worker = None
    try:
        assert emulator.stdout is not None
        banner = (await asyncio.wait_for(emulator.stdout.readline(), 20)).decode()
        match = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert match is not None, banner
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "mxo_async.cli", "--base-url", match.group(), "--site-key"),
            *("ONE-TESTTEST01-0001", "--client-id", "test-client", "--client-secret"),
            *("test-secret", "worker", "ingest", "--redis", redis_server.url),
            *("--stream", STREAM, "--group", GROUP, "--max-pending", "2000"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=ROOT,
        )
        samples: list[tuple[int, float]] = []

        async def drained() -> bool:
            assert worker is not None
            groups = await redis.xinfo_groups(STREAM)
            read = int(groups[0]["entries-read"] or 0) if groups else 0
            samples.append((read, rss_mib(worker.pid)))
            pending = (await redis.xpending(STREAM, GROUP))["pending"] if groups else 1
            return bool(groups and groups[0]["lag"] == 0 and pending == 0)

        await wait_until(drained, 120, poll=0.25)
        worker.terminate()
        await asyncio.wait_for(worker.communicate(), 30)
    finally:
        for process in (worker, emulator):
            if process is not None and process.returncode is None:
                process.kill()
                await process.communicate()
    first = max(rss for read, rss in samples if read <= ENTRIES // 4)
    last = max(rss for read, rss in samples if read >= 3 * ENTRIES // 4)
    print(f"worker RSS: {first:.1f} MiB at a quarter, {last:.1f} MiB peak in the last quarter")
    assert (0, True) == (worker.returncode, last - first <= 8.0)
