"""Profile the mxo_async hot path (``send_activities``) against a running server.

``python -m benchmarks.runners.profile --base-url URL --requests N --out FILE``

Writes a pyinstrument call tree (where wall time goes, including aiohttp) followed by the cProfile
functions with the most own time, restricted to what the library adds on top of aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time

import mxo_async as mxo

from .._common import CLIENT_ID, CLIENT_SECRET, SITE_KEY, activity_requests, cpu_seconds


async def _send(base_url: str, n: int, concurrency: int, profiled: bool, out: list[str]) -> None:
    async with mxo.MXOClient(base_url, SITE_KEY, CLIENT_ID, CLIENT_SECRET) as client:
        async with client.send_activities(activity_requests(500), concurrency=concurrency) as o:
            async for _ in o:
                pass
        profiler = cProfile.Profile() if profiled else None
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        async with client.send_activities(
            activity_requests(n, 500), concurrency=concurrency
        ) as outcomes:
            async for outcome in outcomes:
                assert outcome.ok, outcome.error
        if profiler is not None:
            profiler.disable()
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text)
            stats.sort_stats("tottime").print_stats(45)
            out.append(text.getvalue())
        out.append(
            f"{n} requests, {time.perf_counter() - t0:.2f} s wall, "
            f"{(cpu_seconds() - cpu0) / n * 1e6:.1f} µs CPU/request"
            + (" (under cProfile)" if profiled else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runners.profile")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", default="benchmarks/results/profile.txt")
    args = parser.parse_args()

    from pyinstrument import Profiler

    tree: list[str] = []
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    asyncio.run(_send(args.base_url, args.requests, args.concurrency, False, tree))
    profiler.stop()
    flat: list[str] = []
    asyncio.run(_send(args.base_url, args.requests, args.concurrency, True, flat))
    with open(args.out, "w") as handle:
        handle.write(
            "# Profile of MXOClient.send_activities against the lean benchmark server\n"
            "# Regenerate: python -m benchmarks --only profile\n\n"
            "## pyinstrument (wall time, call tree)\n\n"
        )
        handle.write("\n".join(tree) + "\n\n")
        handle.write(profiler.output_text(unicode=True, color=False, show_all=False))
        handle.write("\n## cProfile (own time, top functions)\n\n")
        handle.write("\n".join(reversed(flat)) + "\n")


if __name__ == "__main__":
    main()
