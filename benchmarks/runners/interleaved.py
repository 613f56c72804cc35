"""Attribution tool: several contenders interleaved block by block in ONE process.

``python -m benchmarks.runners.interleaved --contenders raw_aiohttp,mxo_send_activities``

Not part of the suite (nothing in the README tables comes from it). The suite runs every
measurement in a fresh process, which is the honest headline number but swings by +-15% per run on
a shared VM. To tell whether a change of a few percent helps, this runner opens every contender at
once (same code as ``throughput.py``, against one server it starts itself), then alternates short
blocks of requests between them, rotating the order, and reports each contender's CPU per request
and the median of its per-block ratios to the first contender. Drift hits neighbouring blocks
alike, so the paired ratios are steady to a few percent. Caveat: the contenders share one event loop,
heap and CPU caches, so the ratios are narrower than between fresh processes; use it for the
direction of a change, not for the size of the gap. The server is pinned to its own CPU as in the
suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time

from .._common import emit
from ..server import ServerProcess
from .throughput import Run, open_contender


async def interleave(
    names: list[str], base_url: str, concurrency: int, blocks: int, block: int
) -> dict[str, dict[str, float]]:
    async with contextlib.AsyncExitStack() as stack:
        runs: dict[str, Run] = {}
        for name in names:
            runs[name] = await stack.enter_async_context(
                open_contender(name, base_url, concurrency)
            )
        row = 0
        for run in runs.values():  # warm-up: connections open, token fetched, code paths hot
            await run(row, 1_000)
            row += 1_000
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for b in range(blocks):
            for name in names[b % len(names) :] + names[: b % len(names)]:
                cpu0, t0 = time.process_time(), time.perf_counter()
                failures = await runs[name](row, block)
                cpu1, t1 = time.process_time(), time.perf_counter()
                row += block
                if failures:
                    raise SystemExit(f"{name}: {failures} failures")
                samples[name].append(((cpu1 - cpu0) / block * 1e6, block / (t1 - t0)))
    base = samples[names[0]]
    return {
        name: {
            "cpu_us_per_request": statistics.median(s[0] for s in runs_),
            "cpu_ratio_paired": statistics.median(
                s[0] / b[0] for s, b in zip(runs_, base, strict=True)
            ),
            "rps_ratio_paired": statistics.median(
                s[1] / b[1] for s, b in zip(runs_, base, strict=True)
            ),
        }
        for name, runs_ in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runners.interleaved")
    parser.add_argument("--contenders", default="raw_aiohttp,mxo_send_activities")
    parser.add_argument("--server", choices=["lean", "emulator"], default="lean")
    parser.add_argument("--blocks", type=int, default=12, help="blocks per contender")
    parser.add_argument("--block-requests", type=int, default=3_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    names = args.contenders.split(",")
    with ServerProcess(args.server, pin=True) as server:
        result = asyncio.run(
            interleave(names, server.base_url, args.concurrency, args.blocks, args.block_requests)
        )
    for name, row in result.items():
        emit({"contender": name, "server": args.server, **row})


if __name__ == "__main__":
    main()
