"""``python -m benchmarks``: run the suite, write results/latest.json and the README table.

Every measurement runs in a fresh child process; servers run in their own processes too. Options
select what to run and how big; ``--only`` merges its results into the existing latest.json so a
long measurement (the 1M-request memory run) can be recorded once and kept.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ._common import PINNED_MALLOC
from .report import machine, write_readme
from .server import ServerProcess

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "latest.json"
CONTENDERS = (
    "raw_aiohttp",
    "mxo_send_activities",
    "mxo_single",
    "naive_gather",
    "aiometer",
    "httpx",
    "mxo_read_timeout",
    "raw_aiohttp_timeouts",
)
SLOW = {"httpx": 5}  # httpx is ~10x slower here: it sends this fraction of the requests
SUITES = ("throughput", "emulator", "memory", "tokens", "batcher", "profile", "fleet")


def run_child(module: str, *args: object) -> list[dict[str, Any]]:
    """Run ``python -m benchmarks.runners.<module> ARGS`` and parse its JSON lines."""
    command = [sys.executable, "-m", f"benchmarks.runners.{module}", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def measure(contender: str, base_url: str, requests: int, concurrency: int) -> dict[str, Any]:
    """One throughput run of ``contender`` in a fresh process."""
    (result,) = run_child(
        "throughput",
        "--contender",
        contender,
        "--base-url",
        base_url,
        "--requests",
        requests,
        "--concurrency",
        concurrency,
    )
    return result


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def throughput(
    kind: str, requests: int, rounds: int, concurrency: int, pin: bool
) -> dict[str, Any]:
    """Alternate the contenders round by round (rotated order) against one server process."""
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
    with ServerProcess(kind, pin=pin) as server:
        placement = server.placement
        for round_ in range(rounds):
            order = CONTENDERS[round_ % len(CONTENDERS) :] + CONTENDERS[: round_ % len(CONTENDERS)]
            for name in order:
                n = requests // SLOW.get(name, 1)
                result = measure(name, server.base_url, n, concurrency)
                samples[name].append(result)
                log(
                    f"{kind} round {round_ + 1}/{rounds} {name}: {result['rps']:.0f} req/s, "
                    f"{result['cpu_us_per_request']:.1f} µs CPU/req"
                )
    rows: dict[str, Any] = {}
    for name, runs in samples.items():
        rows[name] = {
            "requests": runs[0]["requests"],
            "failures": sum(r["failures"] for r in runs),
            "rps": statistics.median(r["rps"] for r in runs),
            "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in runs),
            "rps_runs": [round(r["rps"], 1) for r in runs],
            "cpu_us_runs": [round(r["cpu_us_per_request"], 2) for r in runs],
        }
    base = rows["raw_aiohttp"]
    for name, row in rows.items():
        row["rps_ratio"] = row["rps"] / base["rps"]
        row["cpu_ratio"] = row["cpu_us_per_request"] / base["cpu_us_per_request"]
        # Each round's ratio against the raw run of the same round (drift on a shared machine
        # moves both), then the median over rounds.
        pairs = list(zip(samples[name], samples["raw_aiohttp"], strict=True))
        row["cpu_ratio_paired"] = statistics.median(
            r["cpu_us_per_request"] / b["cpu_us_per_request"] for r, b in pairs
        )
        row["rps_ratio_paired"] = statistics.median(r["rps"] / b["rps"] for r, b in pairs)
    return {
        "server": kind,
        "rounds": rounds,
        "concurrency": concurrency,
        "requests_per_round": requests,
        "placement": placement,
        "contenders": rows,
    }


def head_to_head(
    kind: str, requests: int, pairs: int, concurrency: int, pin: bool
) -> dict[str, Any]:
    """``send_activities`` against raw aiohttp in back-to-back pairs (ABBA order): the targets.

    In the rotated rounds above, a contender and the raw run it is compared with can be half a
    minute apart, and the shared machine drifts by more than the effect being measured. Here the
    two runs of a pair are seconds apart, and which goes first alternates.
    """
    names = ("raw_aiohttp", "mxo_send_activities")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with ServerProcess(kind, pin=pin) as server:
        placement = server.placement
        for pair in range(pairs):
            for name in names if pair % 2 == 0 else names[::-1]:
                runs[name].append(measure(name, server.base_url, requests, concurrency))
            raw, ours = runs["raw_aiohttp"][-1], runs["mxo_send_activities"][-1]
            log(
                f"head-to-head {pair + 1}/{pairs}: CPU {ours['cpu_us_per_request']:.1f} vs "
                f"{raw['cpu_us_per_request']:.1f} µs/request, req/s "
                f"{ours['rps'] / raw['rps']:.3f} x raw"
            )
    cpu = sorted(
        o["cpu_us_per_request"] / r["cpu_us_per_request"]
        for o, r in zip(runs["mxo_send_activities"], runs["raw_aiohttp"], strict=True)
    )
    rps = sorted(
        o["rps"] / r["rps"]
        for o, r in zip(runs["mxo_send_activities"], runs["raw_aiohttp"], strict=True)
    )
    return {
        "server": kind,
        "pairs": pairs,
        "requests": requests,
        "concurrency": concurrency,
        "placement": placement,
        "cpu_ratio": statistics.median(cpu),
        "rps_ratio": statistics.median(rps),
        "cpu_ratios": [round(x, 3) for x in cpu],
        "rps_ratios": [round(x, 3) for x in rps],
        "failures": sum(r["failures"] for rs in runs.values() for r in rs),
        "raw_cpu_us": statistics.median(r["cpu_us_per_request"] for r in runs["raw_aiohttp"]),
        "mxo_cpu_us": statistics.median(
            r["cpu_us_per_request"] for r in runs["mxo_send_activities"]
        ),
    }


def memory(kind: str, sizes_by_mode: dict[str, list[int]]) -> dict[str, Any]:
    out: dict[str, Any] = {mode: {} for mode in sizes_by_mode}
    with ServerProcess(kind) as server:
        for mode, sizes in sizes_by_mode.items():
            for n in sizes:
                log(f"memory {mode} {n} requests against the {kind} server...")
                (result,) = run_child(
                    "memory", "--mode", mode, "--base-url", server.base_url, "--requests", n
                )
                result["server"] = kind
                result["recorded"] = time.strftime("%Y-%m-%d %H:%M")
                out[mode][str(n)] = result
                log(f"  peak RSS growth {result['peak_growth_mib']:.1f} MiB")
    return out


def batcher() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with ServerProcess("emulator") as server:
        url = server.base_url
        log("batcher: coalescing")
        out["coalesce"] = [
            run_child("batcher", "--scenario", "coalesce", "--base-url", url, "--max-pending", p)[0]
            for p in (10_000, 20_000)
        ]
        log("batcher: latency")
        out["latency"] = [
            run_child("batcher", "--scenario", "latency", "--base-url", url, "--customers", c)[0]
            for c in (2_000, 200)
        ]
    log("batcher: submit rate")
    (out["submit"],) = run_child("batcher", "--scenario", "submit")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only", default=",".join(SUITES), help="comma-separated: " + ",".join(SUITES)
    )
    parser.add_argument("--requests", type=int, default=20_000, help="per contender per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--pairs", type=int, default=10, help="head-to-head pairs (raw vs send_activities)"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--server", choices=["lean", "emulator"], default="lean")
    parser.add_argument(
        "--memory-requests", default="100000", help="comma-separated fan-out sizes (e.g. 1000000)"
    )
    parser.add_argument("--gather-requests", default="10000,50000,100000")
    parser.add_argument("--sweep-requests", default="100000", help="delete_customers sizes")
    parser.add_argument(
        "--journal-requests", default="100000", help="delete_customers(journal=...) sizes"
    )
    parser.add_argument("--memory-server", choices=["lean", "emulator"], default="emulator")
    parser.add_argument("--no-write", action="store_true", help="print JSON, write nothing")
    parser.add_argument(
        "--malloc",
        choices=["pinned", "default"],
        default="pinned",
        help="pinned (default): fixed glibc malloc thresholds for every child process, see _common",
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="throughput: server on its own CPU, runners on the others (see _common.split_cpus)",
    )
    args = parser.parse_args()
    if args.malloc == "pinned":
        os.environ.update(PINNED_MALLOC)  # inherited by every server and runner process
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SUITES)
    if unknown:
        parser.error(f"unknown suites: {', '.join(sorted(unknown))}")

    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["machine"] = machine()
    results["machine"]["malloc"] = (
        " ".join(f"{k}={v}" for k, v in PINNED_MALLOC.items())
        if args.malloc == "pinned"
        else "glibc defaults"
    )
    if "throughput" in only:
        results["throughput"] = throughput(
            args.server, args.requests, args.rounds, args.concurrency, args.pin
        )
        results["head_to_head"] = head_to_head(
            args.server, args.requests, args.pairs, args.concurrency, args.pin
        )
    if "emulator" in only:
        other = "emulator" if args.server == "lean" else "lean"
        results["throughput_" + other] = throughput(
            other, args.requests, 1, args.concurrency, args.pin
        )
    if "memory" in only:
        sizes = {
            "fanout": args.memory_requests,
            "gather": args.gather_requests,
            "sweep": args.sweep_requests,
            "journal": args.journal_requests,
        }
        fresh = memory(
            args.memory_server,
            {mode: [int(n) for n in text.split(",") if n] for mode, text in sizes.items()},
        )
        kept = results.get("memory", {})
        for mode in sizes:
            kept.setdefault(mode, {}).update(fresh[mode])
        results["memory"] = kept
    if "tokens" in only:
        log("token storm")
        results["tokens"] = run_child("tokens", "--calls", 1000)
    if "batcher" in only:
        results["batcher"] = batcher()
    if "fleet" in only:
        log("fleet: CPU per request with a RedisCoordinator and without, Redis round trips")
        results["fleet"] = run_child("fleet", "--pairs", 6, "--requests", args.requests)
    if "profile" in only:
        log("profile")
        with ServerProcess("lean") as server:
            run_child(
                "profile", "--base-url", server.base_url, "--out", HERE / "results" / "profile.txt"
            )
        results["profile"] = "benchmarks/results/profile.txt"
    results["generated"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    if args.no_write:
        print(json.dumps(results, indent=2))
        return
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    write_readme(HERE / "README.md", results)
    log(f"wrote {RESULTS} and {HERE / 'README.md'}")


if __name__ == "__main__":
    main()
