"""One fleet process for the multi-process tests: ``python -m tests.fleet.worker CONFIG_JSON``.

For each phase of the config it builds a client (with a RedisCoordinator, or alone), warms it up,
prints ``ready``, waits for ``go`` on stdin, runs the phase and prints one JSON line of what it
saw. Times are ``time.monotonic()``, which on Linux is one clock for every process of the machine.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

import mxo_async as mxo
from mxo_async.redis import RedisCoordinator


def request(tag: str, n: int) -> mxo.ActivityRequest:
    return mxo.ActivityRequest(
        mxo.Customer.by_key(f"{tag}-{n}"), "web://fleet", [mxo.Activity("web", "view")]
    )


class Recorder:
    """Times of API sends, of 429 answers and of fleet events."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.token_requests = 0
        self.rejected: list[float] = []
        self.accepted: list[float] = []
        self.fleet: list[tuple[float, bool, str]] = []

    def __call__(self, event: mxo.Event) -> None:
        now = time.monotonic()
        if isinstance(event, mxo.RequestSent):
            if event.operation == "token":
                self.token_requests += 1
            else:
                self.sent.append(now)
        elif isinstance(event, mxo.ResponseReceived):
            if event.status == 429:
                self.rejected.append(now)
            elif event.status == 200:
                self.accepted.append(now)
        elif isinstance(event, mxo.FleetSharingChanged):
            self.fleet.append((now, event.sharing, event.reason))


async def line() -> str:
    text: str = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return text.strip()


async def run_phase(config: dict[str, Any], phase: dict[str, Any], index: int) -> dict[str, Any]:
    tag = f"p{config['process']}-{index}"
    redis = Redis.from_url(config["redis_url"]) if phase.get("coordinated") else None
    coordinator = None
    if redis is not None:
        coordinator = RedisCoordinator(
            redis,
            namespace=config["namespace"],
            share_token=phase.get("share_token", False),
            expected_processes=config["processes"],
            reconnect=(0.1, 0.4),
        )
    recorder = Recorder()
    policy = mxo.RetryPolicy(max_rate_limited_attempts=50, max_attempts=10, max_retry_after=5)
    limits = mxo.Limits(rate=phase.get("rate"))
    try:
        async with mxo.MXOClient(
            config["base_url"],
            config["site_key"],
            config["client_id"],
            config["secret"],
            limits=limits,
            retry=policy,
            coordinator=coordinator,
            on_event=recorder,
        ) as client:
            if phase.get("warm", True):
                await client.send_request(request(tag, -1))
            print("ready", flush=True)
            if await line() != "go":
                raise SystemExit("no go")
            before = dict(client.stats.statuses)
            tokens_before = recorder.token_requests
            sent_before = len(recorder.sent)
            started = time.monotonic()
            kind = phase["kind"]
            ok = failed = 0
            if kind == "burst":  # many concurrent single calls
                results = await asyncio.gather(
                    *(client.send_request(request(tag, n)) for n in range(phase["calls"])),
                    return_exceptions=True,
                )
                ok = sum(isinstance(r, mxo.ActivityResult) for r in results)
                failed = len(results) - ok
            else:
                deadline = started + phase.get("duration", 1e9)
                count = phase.get("count", 10**9)

                async def requests() -> AsyncIterator[mxo.ActivityRequest]:
                    for n in range(count):
                        if time.monotonic() >= deadline:
                            return
                        yield request(tag, n)

                async with client.send_activities(requests(), concurrency=32) as outcomes:
                    async for outcome in outcomes:
                        ok += outcome.ok
                        failed += not outcome.ok
            elapsed = time.monotonic() - started
            statuses = {str(k): v - before.get(k, 0) for k, v in client.stats.statuses.items()}
            link = client._fleet  # the link's round-trip counter is the benchmark's figure
            round_trips = getattr(link, "round_trips", 0)
        return {
            "ok": ok,
            "failed": failed,
            "elapsed": elapsed,
            "started": started,
            "statuses": statuses,
            "token_requests": recorder.token_requests - tokens_before,
            "sent": recorder.sent[sent_before:],
            "rejected": recorder.rejected,
            "accepted": recorder.accepted,
            "fleet": recorder.fleet,
            "round_trips": round_trips,
        }
    finally:
        if redis is not None:
            await redis.aclose()


async def main() -> None:
    config = json.loads(sys.argv[1])
    for index, phase in enumerate(config["phases"]):
        result = await run_phase(config, phase, index)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
