"""Batcher benchmarks, each scenario in this fresh process.

``python -m benchmarks.runners.batcher --scenario coalesce|submit|latency [--base-url URL]``

* ``coalesce``: 10 activities for each of 2,000 customers, submitted interleaved (customer 0..1999,
  ten times over), against a server: how many activities travel per request? With the default
  ``max_pending=10_000`` only half of the 20,000 activities fit in the buffers, so the oldest
  buffers go early ("pressure"); ``--max-pending 20000`` shows the coalescing alone.
* ``submit``: the rate of ``submit`` with the network out of the picture: the client's transport
  answers every request at once (no socket), so what is measured is validation, coalescing,
  bookkeeping, request building and settling. Reported twice: with ``max_pending`` larger than the
  run (pure intake) and with the default ``max_pending`` (intake paced by delivery).
* ``latency``: activities trickle in (a fixed rate over many customers, so buffers rarely fill) and
  each delivery's latency from ``submit`` to settlement is recorded against ``max_latency``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Mapping

import orjson

import mxo_async as mxo
from mxo_async._transport import RawResponse

from .._common import (
    CLIENT_ID,
    CLIENT_SECRET,
    SITE_KEY,
    TOUCHPOINT,
    cpu_seconds,
    customer_key,
    emit,
)

_TOKEN = orjson.dumps({"access_token": "t", "token_type": "Bearer", "expires_in": 3600})
_OK = orjson.dumps({"statusCode": 200, "tid": "a08b10a4-ead9-7667-9116-add167624b57"})


class InstantTransport:
    """A transport that answers every request immediately, without a socket."""

    def __init__(self) -> None:
        self.requests = 0
        self._headers: Mapping[str, str] = {"Content-Type": "application/json"}

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        time_left: float | None = None,
    ) -> RawResponse:
        self.requests += 1
        return RawResponse(200, self._headers, _TOKEN if url.endswith("oauth2token") else _OK)

    async def aclose(self) -> None:
        return None


def _activity(i: int) -> mxo.Activity:
    return mxo.Activity("bench", "click", dynamic_proposition=f"offer-{i % 100}")


async def coalesce(
    base_url: str, customers: int, per_customer: int, max_pending: int
) -> dict[str, object]:
    async with mxo.MXOClient(base_url, SITE_KEY, CLIENT_ID, CLIENT_SECRET) as client:
        people = [mxo.Customer.by_key(customer_key(c)) for c in range(customers)]
        t0 = time.perf_counter()
        batcher = client.batcher(max_activities=100, max_latency=0.5, max_pending=max_pending)
        async with batcher:
            for round_ in range(per_customer):
                for person in people:
                    await batcher.submit(person, TOUCHPOINT, _activity(round_))
            report = await batcher.aclose()
        seconds = time.perf_counter() - t0
        return {
            "scenario": "coalesce",
            "customers": customers,
            "max_pending": max_pending,
            "activities": report.submitted,
            "delivered": report.delivered,
            "requests": report.requests,
            "http_requests": client.stats.requests,
            "activities_per_request": report.submitted / report.requests,
            "flushes": dict(report.flushes),
            "seconds": seconds,
        }


async def _submit_run(activities: int, customers: int, max_pending: int) -> dict[str, float]:
    transport = InstantTransport()
    async with mxo.MXOClient(
        "https://bench.invalid", SITE_KEY, CLIENT_ID, CLIENT_SECRET, transport=transport
    ) as client:
        people = [mxo.Customer.by_key(customer_key(c)) for c in range(customers)]
        batcher = client.batcher(max_activities=100, max_latency=0.5, max_pending=max_pending)
        async with batcher:
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            for i in range(activities):
                await batcher.submit(people[i % customers], TOUCHPOINT, _activity(i))
            t_submit = time.perf_counter() - t0
            report = await batcher.aclose()
            t_total = time.perf_counter() - t0
            cpu = cpu_seconds() - cpu0
        assert report.ok, report
        return {
            "max_pending": max_pending,
            "activities": activities,
            "submit_seconds": t_submit,
            "submits_per_second": activities / t_submit,
            "end_to_end_per_second": activities / t_total,
            "cpu_us_per_activity": cpu / activities * 1e6,
            "requests": report.requests,
            "activities_per_request": activities / report.requests,
        }


async def submit(activities: int, customers: int) -> dict[str, object]:
    unbounded = await _submit_run(activities, customers, max_pending=activities)
    default = await _submit_run(activities, customers, max_pending=10_000)
    return {
        "scenario": "submit",
        "customers": customers,
        "unbounded": unbounded,
        "default": default,
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": max(values)}


async def latency(
    base_url: str, rate: float, seconds: float, customers: int, max_latency: float
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []

    async with mxo.MXOClient(base_url, SITE_KEY, CLIENT_ID, CLIENT_SECRET) as client:
        await client.send_activity(mxo.Customer.by_key("warm-up"), TOUCHPOINT, _activity(0))
        people = [mxo.Customer.by_key(customer_key(c)) for c in range(customers)]

        async def track(delivery: mxo.Delivery, submitted: float) -> None:
            await delivery
            latencies.append(loop.time() - submitted)

        trackers: set[asyncio.Task[None]] = set()
        total = int(rate * seconds)
        async with client.batcher(max_activities=100, max_latency=max_latency) as batcher:
            start = loop.time()
            for i in range(total):
                due = start + i / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                submitted = loop.time()
                delivery = await batcher.submit(people[i % customers], TOUCHPOINT, _activity(i))
                task = loop.create_task(track(delivery, submitted))
                trackers.add(task)
                task.add_done_callback(trackers.discard)
            report = await batcher.aclose()
        if trackers:
            await asyncio.gather(*trackers)
    return {
        "scenario": "latency",
        "max_latency": max_latency,
        "rate": rate,
        "customers": customers,
        "activities": total,
        "requests": report.requests,
        "activities_per_request": total / report.requests,
        "flushes": dict(report.flushes),
        "latency": _percentiles(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runners.batcher")
    parser.add_argument("--scenario", required=True, choices=["coalesce", "submit", "latency"])
    parser.add_argument("--base-url", default="")
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--per-customer", type=int, default=10)
    parser.add_argument("--activities", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=2_000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-latency", type=float, default=0.5)
    parser.add_argument("--max-pending", type=int, default=10_000)
    args = parser.parse_args()
    if args.scenario == "coalesce":
        result = asyncio.run(
            coalesce(args.base_url, args.customers, args.per_customer, args.max_pending)
        )
    elif args.scenario == "submit":
        result = asyncio.run(submit(args.activities, args.customers))
    else:
        result = asyncio.run(
            latency(args.base_url, args.rate, args.seconds, args.customers, args.max_latency)
        )
    emit(result)


if __name__ == "__main__":
    main()
