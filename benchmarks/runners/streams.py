"""One ingestion worker on a Redis stream vs ``mxo-async send --coalesce`` from a file.

``python -m benchmarks.runners.streams --entries 200000 --pairs 5 [--server lean|emulator]``

Starts a ``redis-server`` (no persistence) and the benchmark server in their own processes, writes
the same ``--entries`` records (``mxo-async send`` NDJSON lines; ten consecutive records share a
customer, so both sides coalesce alike) to a file and to a stream, then runs ``--pairs`` pairs,
the order alternating (worker first in pairs 1, 3, ..., send first in pairs 2, 4, ...), each contender a
fresh process started from the command line with the same client settings (``--concurrency
64``, the default retry policy, coalescing in the batcher, 100 activities per request at most):

* ``worker``: ``mxo-async worker ingest`` as a new consumer group of the stream (so it reads all
  of it), from its start until the group has no lag and nothing pending (then SIGTERM); its RSS
  is sampled every 0.05 s (``/proc/PID/status``) to show memory stays bounded by
  ``--max-pending`` whatever the backlog;
* ``send``: ``mxo-async send --coalesce FILE`` from its start to its exit.

Per run: activities/s, CPU µs per activity of the client process (``/proc`` for the worker,
``getrusage`` for the send), of redis-server and of the API server (``/proc``, the difference
over the run). One JSON line with every pair and the medians of the ratios (worker / send) of
activities/s, client CPU and client + redis-server CPU. On 2 cores the worker shares them with
redis-server and the API server (three busy processes), the send with the API server only: the
wall-clock ratio carries that contention, the client CPU ratio does not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from .._common import CLIENT_ID, CLIENT_SECRET, SITE_KEY, emit
from ..server import ServerProcess, free_port

STREAM = "{bench}"
CONCURRENCY = "64"


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


class Servers:
    """The CPU seconds redis-server and the API server spent since :meth:`start`."""

    def __init__(self, redis_pid: int, api_pid: int) -> None:
        self.pids = {"redis": redis_pid, "api": api_pid}
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: cpu_s(pid) for name, pid in self.pids.items()}

    def spent(self) -> dict[str, float]:
        return {name: cpu_s(pid) - self._before[name] for name, pid in self.pids.items()}


def per_activity(seconds: float, entries: int) -> float:
    return round(seconds / entries * 1e6, 2)


async def run_worker(
    base_url: str, redis: Redis, redis_url: str, entries: int, max_pending: int, group: str
) -> dict[str, Any]:
    command = cli(base_url, "worker", "ingest", "--redis", redis_url, "--stream", STREAM)
    command += ["--group", group, "--max-pending", str(max_pending), "--concurrency", CONCURRENCY]
    command += ["--status-interval", "3600"]
    started = time.perf_counter()
    # Popen, not asyncio: the sampling loop reads /proc of this pid, nothing of its pipes.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    samples: list[tuple[int, int]] = []  # (entries read by the group, RSS KiB)
    try:
        while True:
            await asyncio.sleep(0.05)
            groups = [g for g in await redis.xinfo_groups(STREAM) if g["name"] == group.encode()]
            read = int(groups[0]["entries-read"] or 0) if groups else 0
            samples.append((read, rss_kib(process.pid)))
            if groups and groups[0]["lag"] == 0 and groups[0]["pending"] == 0:
                break
            if process.poll() is not None:
                raise RuntimeError("the worker exited early")
        elapsed = time.perf_counter() - started
        cpu = cpu_s(process.pid)
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=60)
    stats = orjson.loads(out.decode().splitlines()[-1])
    if stats["activities"] != entries:
        raise RuntimeError(f"the worker delivered {stats['activities']} of {entries} activities")
    tenths = [
        next((rss for read, rss in samples if read >= entries * k // 10), samples[-1][1])
        for k in range(1, 11)
    ]
    return {
        "elapsed_s": round(elapsed, 3),
        "activities_per_s": round(entries / elapsed),
        "cpu_us_per_activity": per_activity(cpu, entries),
        "rss_mib_by_tenth": [round(kib / 1024, 1) for kib in tenths],
        "peak_rss_mib": round(max(rss for _, rss in samples) / 1024, 1),
    }


def run_send(base_url: str, path: Path, entries: int) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        cli(base_url, "send", "--coalesce", "--concurrency", CONCURRENCY, str(path)),
        capture_output=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        raise RuntimeError(f"send failed: {done.stderr.decode()[-2000:]}")
    return {
        "elapsed_s": round(elapsed, 3),
        "activities_per_s": round(entries / elapsed),
        "cpu_us_per_activity": per_activity(cpu, entries),
    }


async def one_pair(
    n: int, api: ServerProcess, servers: Servers, redis: Redis, redis_url: str, options: Any
) -> dict[str, Any]:
    entries = options.entries
    results: dict[str, Any] = {}
    for contender in ("worker", "send") if n % 2 == 0 else ("send", "worker"):
        servers.start()
        if contender == "worker":
            results[contender] = await run_worker(
                api.base_url, redis, redis_url, entries, options.max_pending, f"bench-{n}"
            )
        else:
            results[contender] = run_send(api.base_url, options.path, entries)
        for name, seconds in servers.spent().items():
            results[contender][f"{name}_cpu_us_per_activity"] = per_activity(seconds, entries)
    worker, send = results["worker"], results["send"]
    client_and_redis = worker["cpu_us_per_activity"] + worker["redis_cpu_us_per_activity"]
    return {
        "pair": n + 1,
        "first": "worker" if n % 2 == 0 else "send",
        "worker": worker,
        "send": send,
        "ratio": round(worker["activities_per_s"] / send["activities_per_s"], 3),
        "cpu_ratio": round(worker["cpu_us_per_activity"] / send["cpu_us_per_activity"], 3),
        "cpu_with_redis_ratio": round(client_and_redis / send["cpu_us_per_activity"], 3),
    }


async def main(options: Any) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    pairs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(options.server) as api:
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
            options.path = Path(tmp) / "records.ndjson"
            await produce(redis, options.entries, options.path)
            assert api._process is not None
            servers = Servers(redis_process.pid, api._process.pid)
            for n in range(options.pairs):
                pair = await one_pair(n, api, servers, redis, redis_url, options)
                pairs.append(pair)
                print(orjson.dumps(pair).decode(), file=sys.stderr, flush=True)
        finally:
            await redis.aclose()
            redis_process.terminate()
            redis_process.wait()
    emit(
        {
            "suite": "streams",
            "server": options.server,
            "entries": options.entries,
            "max_pending": options.max_pending,
            "concurrency": int(CONCURRENCY),
            "pairs": pairs,
            "median": {
                key: round(statistics.median(pair[key] for pair in pairs), 3)
                for key in ("ratio", "cpu_ratio", "cpu_with_redis_ratio")
            },
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--server", choices=("lean", "emulator"), default="lean")
    parser.add_argument("--max-pending", type=int, default=5_000)
    asyncio.run(main(parser.parse_args()))
