"""One ingestion worker on a Redis stream vs ``mxo-async send --coalesce`` from a file.

``python -m benchmarks.runners.streams --entries 200000 [--server lean|emulator]``

Starts a ``redis-server`` (no persistence) and the benchmark server in their own processes, writes
the same ``--entries`` records (``mxo-async send`` NDJSON lines; ten consecutive records share a
customer, so both sides coalesce alike) to a file and to a stream, then times, each as its own
process started from the command line:

* ``worker``: ``mxo-async worker ingest`` from its start until the group has no lag and nothing
  pending (then SIGTERM); its RSS is sampled every 0.2 s (``/proc/PID/status``) to show memory
  stays bounded by ``--max-pending`` whatever the backlog;
* ``send``: ``mxo-async send --coalesce FILE`` from its start to its exit.

One JSON line: activities/s of each and their ratio, CPU µs per activity of each (the worker's
from ``/proc``, the send's from ``getrusage``) and their ratio, and the worker's RSS at each tenth
of the run. On 2 cores the worker shares them with redis-server and the API server (three busy
processes), the send with the API server only: the wall-clock ratio carries that contention, the
CPU ratio does not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from .._common import CLIENT_ID, CLIENT_SECRET, SITE_KEY, emit
from ..server import ServerProcess, free_port

STREAM, GROUP = "{bench}", "bench"


def record(n: int) -> str:
    return (
        f'{{"customer_key": "c{n // 10 % 10_000}", "touchpoint": "web://bench", '
        f'"proposition": "web", "activity_type": "view"}}'
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cli(base_url: str, *args: str) -> list[str]:
    return [
        *(sys.executable, "-m", "mxo_async.cli", "--base-url", base_url),
        *("--site-key", SITE_KEY, "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET),
        *args,
    ]


async def produce(redis: Redis, entries: int, path: Path) -> None:
    with path.open("w") as file:
        for start in range(0, entries, 5000):
            async with redis.pipeline(transaction=False) as pipe:
                for n in range(start, min(start + 5000, entries)):
                    line = record(n)
                    pipe.xadd(STREAM, {"record": line})
                    file.write(line + "\n")
                await pipe.execute()


async def run_worker(
    base_url: str, redis: Redis, redis_url: str, entries: int, max_pending: int
) -> dict[str, Any]:
    command = cli(base_url, "worker", "ingest", "--redis", redis_url, "--stream", STREAM)
    command += ["--group", GROUP, "--max-pending", str(max_pending), "--status-interval", "3600"]
    started = time.perf_counter()
    # Popen, not asyncio: the sampling loop reads /proc of this pid, nothing of its pipes.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    samples: list[tuple[int, int]] = []  # (entries read by the group, RSS KiB)
    try:
        while True:
            await asyncio.sleep(0.2)
            groups = await redis.xinfo_groups(STREAM)
            read = int(groups[0]["entries-read"] or 0) if groups else 0
            samples.append((read, rss_kib(process.pid)))
            pending = (await redis.xpending(STREAM, GROUP))["pending"] if groups else 1
            if groups and groups[0]["lag"] == 0 and pending == 0:
                break
            if process.poll() is not None:
                raise RuntimeError("the worker exited early")
        elapsed = time.perf_counter() - started
        cpu = cpu_s(process.pid)
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=60)
    stats = json.loads(out.decode().splitlines()[-1])
    tenths = [
        next((rss for read, rss in samples if read >= entries * k // 10), samples[-1][1])
        for k in range(1, 11)
    ]
    return {
        "elapsed_s": elapsed,
        "activities_per_s": stats["activities"] / elapsed,
        "cpu_us_per_activity": cpu / entries * 1e6,
        "acked": stats["acked"],
        "rss_mib_by_tenth": [round(kib / 1024, 1) for kib in tenths],
        "peak_rss_mib": round(max(rss for _, rss in samples) / 1024, 1),
    }


def run_send(base_url: str, path: Path, entries: int) -> dict[str, Any]:
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        cli(base_url, "send", "--coalesce", str(path)), capture_output=True, check=False
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        raise RuntimeError(f"send failed: {done.stderr.decode()[-2000:]}")
    return {
        "elapsed_s": elapsed,
        "activities_per_s": entries / elapsed,
        "cpu_us_per_activity": cpu / entries * 1e6,
    }


async def main(entries: int, server: str, max_pending: int) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(server) as api:
        port = free_port()
        redis_process = subprocess.Popen(  # noqa: ASYNC220 - a server, never awaited
            [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        redis_url = f"redis://127.0.0.1:{port}/0"
        redis = Redis.from_url(redis_url)
        try:
            for _ in range(100):
                try:
                    await redis.ping()
                    break
                except Exception:
                    await asyncio.sleep(0.05)
            path = Path(tmp) / "records.ndjson"
            await produce(redis, entries, path)
            worker = await run_worker(api.base_url, redis, redis_url, entries, max_pending)
            send = run_send(api.base_url, path, entries)
        finally:
            await redis.aclose()
            redis_process.terminate()
            redis_process.wait()
    emit(
        {
            "suite": "streams",
            "server": server,
            "entries": entries,
            "max_pending": max_pending,
            "worker": worker,
            "send_coalesce": send,
            "ratio": worker["activities_per_s"] / send["activities_per_s"],
            "cpu_ratio": worker["cpu_us_per_activity"] / send["cpu_us_per_activity"],
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--server", choices=("lean", "emulator"), default="lean")
    parser.add_argument("--max-pending", type=int, default=5_000)
    options = parser.parse_args()
    asyncio.run(main(options.entries, options.server, options.max_pending))
