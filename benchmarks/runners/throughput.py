"""One throughput/CPU measurement of one contender, in a fresh process.

``python -m benchmarks.runners.throughput --contender NAME --base-url URL --requests N``

Every contender first warms up (connections open, token fetched, code paths hot), then sends
``--requests`` activity requests with ``--concurrency`` in flight; the row data (customer keys,
dynamic proposition codes) differs per request and is built inside the timed section, as an
ingestion worker would build it from its input. CPU time is the ``getrusage(RUSAGE_SELF)``
user+sys delta over the timed section only (interpreter start-up and imports excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aiohttp

import mxo_async as mxo

from .._common import (
    CLIENT_ID,
    CLIENT_SECRET,
    SITE_KEY,
    activity_requests,
    api_root,
    call_args,
    cpu_seconds,
    emit,
    wire_body,
)

Run = Callable[[int, int], Awaitable[int]]  # (start row, count) -> failures


def _client(base_url: str, read_timeout: bool = False) -> mxo.MXOClient:
    # Default settings: auth, retry, adaptive throttle and validation all on.
    if not read_timeout:
        return mxo.MXOClient(base_url, SITE_KEY, CLIENT_ID, CLIENT_SECRET)
    # For reference only: the opt-in read timeout, which aiohttp re-arms on every read.
    timeouts = mxo.Timeouts(read=30.0)
    return mxo.MXOClient(base_url, SITE_KEY, CLIENT_ID, CLIENT_SECRET, timeouts=timeouts)


def _client_timeouts() -> aiohttp.ClientTimeout:
    """The client's default per-attempt limits, as a raw aiohttp user would set them."""
    defaults = mxo.Timeouts()
    return aiohttp.ClientTimeout(
        total=defaults.total, connect=defaults.connect, sock_read=defaults.read
    )


async def _raw_token(session: aiohttp.ClientSession, base_url: str) -> str:
    import base64

    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    async with session.post(
        base_url + "/one/oauth2token",
        data=b"grant_type=client_credentials",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    ) as response:
        token: str = json.loads(await response.read())["access_token"]
        return token


async def _pool(
    concurrency: int, rows: Iterator[int], one: Callable[[int], Awaitable[bool]]
) -> int:
    """``concurrency`` workers pulling row numbers from a shared iterator; returns failures."""
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for i in rows:
            if not await one(i):
                failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


async def contender(
    name: str, base_url: str, concurrency: int, warmup: int, n: int
) -> dict[str, float]:
    async with open_contender(name, base_url, concurrency) as run:
        return await _measure(run, warmup, n)


@contextlib.asynccontextmanager
async def open_contender(name: str, base_url: str, concurrency: int) -> AsyncIterator[Run]:
    """The contender's ``run(start, count)``, with its session or client open."""
    url = api_root(base_url) + "/activity"
    if name in ("raw_aiohttp", "aiometer", "raw_aiohttp_timeouts"):
        # raw_aiohttp_timeouts: reference only, the raw baseline with the client's default
        # per-attempt limits (aiohttp arms a timer for each of total and connect per request).
        timeout = _client_timeouts() if name == "raw_aiohttp_timeouts" else None
        async with aiohttp.ClientSession(timeout=timeout) as session:
            token = await _raw_token(session, base_url)
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            }

            async def one(i: int) -> bool:
                body = json.dumps(wire_body(i)).encode()
                async with session.post(url, data=body, headers=headers) as response:
                    data = json.loads(await response.read())
                    return response.status == 200 and "tid" in data

            if name != "aiometer":

                async def run(start: int, count: int) -> int:
                    return await _pool(concurrency, iter(range(start, start + count)), one)
            else:
                import aiometer

                async def run(start: int, count: int) -> int:
                    failures = 0
                    async with aiometer.amap(
                        one, range(start, start + count), max_at_once=concurrency
                    ) as results:
                        async for ok in results:
                            failures += not ok
                    return failures

            yield run
            return
    if name == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits) as http:
            response = await http.post(
                base_url + "/one/oauth2token",
                content=b"grant_type=client_credentials",
                auth=(CLIENT_ID, CLIENT_SECRET),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            headers = {
                "Authorization": f"Bearer {response.json()['access_token']}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            }

            async def one_httpx(i: int) -> bool:
                r = await http.post(url, content=json.dumps(wire_body(i)).encode(), headers=headers)
                return r.status_code == 200 and "tid" in json.loads(r.content)

            async def run(start: int, count: int) -> int:
                return await _pool(concurrency, iter(range(start, start + count)), one_httpx)

            yield run
            return
    async with _client(base_url, name == "mxo_read_timeout") as client:
        if name in ("mxo_send_activities", "mxo_read_timeout"):

            async def run(start: int, count: int) -> int:
                failures = 0
                requests = activity_requests(count, start)
                async with client.send_activities(requests, concurrency=concurrency) as outcomes:
                    async for outcome in outcomes:
                        failures += not outcome.ok
                return failures
        elif name == "mxo_single":

            async def one_mxo(i: int) -> bool:
                try:
                    await client.send_activity(*call_args(i))
                except mxo.MXOError:
                    return False
                return True

            async def run(start: int, count: int) -> int:
                return await _pool(concurrency, iter(range(start, start + count)), one_mxo)
        elif name == "naive_gather":

            async def run(start: int, count: int) -> int:
                results = await asyncio.gather(
                    *(client.send_activity(*call_args(i)) for i in range(start, start + count)),
                    return_exceptions=True,
                )
                return sum(isinstance(r, BaseException) for r in results)
        else:
            raise SystemExit(f"unknown contender {name!r}")
        yield run


async def _measure(run: Run, warmup: int, n: int) -> dict[str, float]:
    warm_failures = await run(0, warmup)
    gc0 = [g["collections"] for g in gc.get_stats()]
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    failures = await run(warmup, n)
    cpu1, t1 = cpu_seconds(), time.perf_counter()
    gc1 = [g["collections"] for g in gc.get_stats()]
    return {
        "requests": n,
        "failures": failures + warm_failures,
        "seconds": t1 - t0,
        "cpu_seconds": cpu1 - cpu0,
        "rps": n / (t1 - t0),
        "cpu_us_per_request": (cpu1 - cpu0) / n * 1e6,
        "gc_per_1k_requests": [round((b - a) * 1000 / n, 2) for a, b in zip(gc0, gc1, strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runners.throughput")
    parser.add_argument("--contender", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1_000)
    args = parser.parse_args()
    result = asyncio.run(
        contender(args.contender, args.base_url, args.concurrency, args.warmup, args.requests)
    )
    emit({"contender": args.contender, **result})


if __name__ == "__main__":
    main()
