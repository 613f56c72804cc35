"""Peak-RSS growth of one way of sending many requests, in a fresh process.

``python -m benchmarks.runners.memory --mode fanout|gather|sweep|journal --base-url URL --requests N``

``fanout`` streams ``N`` requests from a generator through ``send_activities``; ``gather`` creates
all ``N`` ``send_activity`` coroutines at once and ``asyncio.gather``s them (the naive way);
``sweep`` erases ``N`` customers from a generator through ``delete_customers``, and ``journal``
does the same with an erasure journal (one fsynced line per customer, in a temporary directory).
All first warm up (1,000 requests: session, token, code paths), then the growth of the process's peak
RSS (``VmHWM`` from /proc/self/status) over the run is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time

import mxo_async as mxo

from .._common import (
    CLIENT_ID,
    CLIENT_SECRET,
    SITE_KEY,
    activity_requests,
    call_args,
    cpu_seconds,
    current_rss_kib,
    emit,
    peak_rss_kib,
)

WARMUP = 1_000


async def _fanout(client: mxo.MXOClient, start: int, n: int, concurrency: int) -> int:
    failures = 0
    async with client.send_activities(
        activity_requests(n, start), concurrency=concurrency
    ) as outcomes:
        async for outcome in outcomes:
            failures += not outcome.ok
    return failures


async def _sweep(client: mxo.MXOClient, start: int, n: int, journal: str | None) -> int:
    customers = (mxo.Customer.by_key(f"erase-{i}@example.com") for i in range(start, start + n))
    failures = 0
    async with client.delete_customers(customers, concurrency=64, journal=journal) as outcomes:
        async for outcome in outcomes:
            failures += not outcome.ok
    return failures


async def _gather(client: mxo.MXOClient, start: int, n: int) -> int:
    results = await asyncio.gather(
        *(client.send_activity(*call_args(i)) for i in range(start, start + n)),
        return_exceptions=True,
    )
    return sum(isinstance(r, BaseException) for r in results)


async def run(mode: str, base_url: str, n: int, concurrency: int) -> dict[str, float | int | str]:
    async with mxo.MXOClient(base_url, SITE_KEY, CLIENT_ID, CLIENT_SECRET) as client:
        await _fanout(client, 0, WARMUP, concurrency)
        gc.collect()
        hwm0, rss0 = peak_rss_kib(), current_rss_kib()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        if mode == "fanout":
            failures = await _fanout(client, WARMUP, n, concurrency)
        elif mode == "gather":
            failures = await _gather(client, WARMUP, n)
        elif mode == "sweep":
            failures = await _sweep(client, WARMUP, n, None)
        elif mode == "journal":
            with tempfile.TemporaryDirectory() as directory:
                failures = await _sweep(client, WARMUP, n, os.path.join(directory, "sweep.jsonl"))
        else:
            raise SystemExit(f"unknown mode {mode!r}")
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        hwm1, rss1 = peak_rss_kib(), current_rss_kib()
    growth = hwm1 - hwm0
    return {
        "mode": mode,
        "requests": n,
        "failures": failures,
        "seconds": seconds,
        "rps": n / seconds,
        "cpu_us_per_request": cpu / n * 1e6,
        "peak_rss_before_mib": hwm0 / 1024,
        "peak_rss_after_mib": hwm1 / 1024,
        "rss_before_mib": rss0 / 1024,
        "rss_after_mib": rss1 / 1024,
        "peak_growth_mib": growth / 1024,
        "growth_bytes_per_request": growth * 1024 / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runners.memory")
    parser.add_argument("--mode", required=True, choices=["fanout", "gather", "sweep", "journal"])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    emit(asyncio.run(run(args.mode, args.base_url, args.requests, args.concurrency)))


if __name__ == "__main__":
    main()
