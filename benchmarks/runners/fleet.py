"""What a RedisCoordinator costs a client: CPU per request with it and without, Redis round trips.

``python -m benchmarks.runners.fleet --pairs 6 --requests 20000 [--callgrind 2000]``

Starts the lean server and a ``redis-server`` (no persistence) in their own processes, then runs
pairs of fresh client processes (``--child``), ``alone`` and ``fleet`` back to back, which one goes
first alternating: the same ``MXOClient`` and ``send_activities`` loop as the throughput suite's
``mxo_send_activities``, with the same ``Limits`` (so ``alone`` applies the configured rate on its
own token bucket) and ``coordinator=RedisCoordinator(...)`` or not. Each child warms up (1,000
requests, and for a configured rate 1.5 s of it more, so the local bucket's burst is mostly spent
and both measure their steady state), then measures its user+system CPU over ``--requests``
requests and counts the coordinator's Redis round trips. Scenarios: ``unlimited`` (adaptive only,
no configured rate: the coordinator reports and listens, and leases only once a shared rate
exists) and ``rate`` (a fleet rate of 3,000 req/s, about what one client can send here: every
request takes a leased permit). One JSON line per scenario: medians and every pair's ratio.

``--callgrind N`` adds the deterministic figure: each mode runs under ``valgrind --tool=callgrind``
twice, with ``N`` and ``2N`` measured requests after a 200-request warm-up, and instructions per
request are the difference of the two totals over ``N`` (start-up and warm-up cancel out). Under
valgrind a client sends far below 3,000 req/s, so this counts the bookkeeping of every permit and
lease, not the pacing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from redis.asyncio import Redis

import mxo_async as mxo
from mxo_async.redis import RedisCoordinator

from .._common import CLIENT_ID, CLIENT_SECRET, SITE_KEY, activity_requests, cpu_seconds, emit
from ..server import ServerProcess

WARMUP = 1_000
SCENARIOS = {"unlimited": None, "rate": 3_000.0}


def _warmup(rate: float | None) -> int:
    return WARMUP + (0 if rate is None else int(1.5 * rate))


async def _child(
    base_url: str, redis_url: str, mode: str, rate: float | None, n: int, warmup: int
) -> None:
    redis = Redis.from_url(redis_url)
    coordinator = RedisCoordinator(redis, namespace="bench") if mode == "fleet" else None
    try:
        async with mxo.MXOClient(
            base_url,
            SITE_KEY,
            CLIENT_ID,
            CLIENT_SECRET,
            allow_insecure_http=True,
            limits=mxo.Limits(rate=rate),
            coordinator=coordinator,
        ) as client:

            async def run(start: int, count: int) -> int:
                failures = 0
                requests = activity_requests(count, start)
                async with client.send_activities(requests, concurrency=64) as outcomes:
                    async for outcome in outcomes:
                        failures += not outcome.ok
                return failures

            await run(0, warmup)
            link = client._fleet
            trips0 = getattr(link, "round_trips", 0)
            cpu0, wall0 = cpu_seconds(), time.perf_counter()
            failures = await run(warmup, n)
            cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
            trips = getattr(link, "round_trips", 0) - trips0
    finally:
        await redis.aclose()
    emit(
        {
            "mode": mode,
            "requests": n,
            "failures": failures,
            "cpu_us_per_request": cpu / n * 1e6,
            "requests_per_s": n / wall,
            "redis_round_trips_per_request": trips / n,
        }
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory, "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise SystemExit("redis-server did not start")


def _child_command(
    base_url: str, redis_url: str, mode: str, scenario: str, n: int, warmup: int | None = None
) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.runners.fleet", "--child", mode]
    command += ["--base-url", base_url, "--redis-url", redis_url]
    command += ["--scenario", scenario, "--requests", str(n)]
    return command if warmup is None else [*command, "--warmup", str(warmup)]


def _run_child(base_url: str, redis_url: str, mode: str, scenario: str, n: int) -> dict[str, Any]:
    command = _child_command(base_url, redis_url, mode, scenario, n)
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _instructions(command: list[str], directory: str) -> int:
    """Instructions callgrind counted over the whole of ``command``."""
    out = f"{directory}/callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    subprocess.run([*valgrind, *command], capture_output=True, check=True)
    with open(out) as profile:
        found = re.search(r"^(?:summary|totals): (\d+)", profile.read(), re.MULTILINE)
    assert found is not None, "no callgrind summary"
    return int(found.group(1))


def _callgrind(
    base_url: str, redis_url: str, scenario: str, n: int, directory: str
) -> dict[str, float]:
    """Instructions per request of each mode: two runs (n and 2n requests), the difference over n."""
    per_request = {}
    for mode in ("alone", "fleet"):
        counts = [
            _instructions(_child_command(base_url, redis_url, mode, scenario, k, 200), directory)
            for k in (n, 2 * n)
        ]
        per_request[mode] = (counts[1] - counts[0]) / n
    return {
        "alone_instructions_per_request": round(per_request["alone"]),
        "fleet_instructions_per_request": round(per_request["fleet"]),
        "instructions_ratio": round(per_request["fleet"] / per_request["alone"], 4),
    }


def _parent(pairs: int, n: int, callgrind: int, scenarios: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory, ServerProcess("lean") as server:
        redis, redis_url = _start_redis(directory)
        try:
            for scenario in scenarios:
                runs: dict[str, list[dict[str, Any]]] = {"alone": [], "fleet": []}
                ratios = []
                for pair in range(pairs):
                    order = ("alone", "fleet") if pair % 2 == 0 else ("fleet", "alone")
                    got = {m: _run_child(server.base_url, redis_url, m, scenario, n) for m in order}
                    for mode, result in got.items():
                        runs[mode].append(result)
                    ratios.append(
                        got["fleet"]["cpu_us_per_request"] / got["alone"]["cpu_us_per_request"]
                    )
                emit(
                    {
                        "scenario": scenario,
                        "rate": SCENARIOS[scenario],
                        "pairs": pairs,
                        "requests": n,
                        **{
                            f"{mode}_cpu_us_per_request": statistics.median(
                                r["cpu_us_per_request"] for r in results
                            )
                            for mode, results in runs.items()
                        },
                        **{
                            f"{mode}_requests_per_s": statistics.median(
                                r["requests_per_s"] for r in results
                            )
                            for mode, results in runs.items()
                        },
                        "cpu_ratio_median": statistics.median(ratios),
                        "cpu_ratios": [round(r, 3) for r in ratios],
                        "redis_round_trips_per_request": statistics.median(
                            r["redis_round_trips_per_request"] for r in runs["fleet"]
                        ),
                        "failures": sum(r["failures"] for rs in runs.values() for r in rs),
                        **(
                            _callgrind(server.base_url, redis_url, scenario, callgrind, directory)
                            if callgrind
                            else {}
                        ),
                    }
                )
        finally:
            redis.terminate()
            redis.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runners.fleet")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--child", choices=["alone", "fleet"])
    parser.add_argument("--base-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="unlimited")
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=[*SCENARIOS])
    parser.add_argument("--warmup", type=int, help="requests before measuring (default: 1,000+)")
    parser.add_argument(
        "--callgrind", type=int, default=0, help="also count instructions per request (N requests)"
    )
    args = parser.parse_args()
    if args.child:
        rate = SCENARIOS[args.scenario]
        warmup = _warmup(rate) if args.warmup is None else args.warmup
        asyncio.run(_child(args.base_url, args.redis_url, args.child, rate, args.requests, warmup))
    else:
        _parent(args.pairs, args.requests, args.callgrind, args.scenarios)


if __name__ == "__main__":
    main()
