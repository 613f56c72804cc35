"""What the call path's one speed trick buys: the first attempt outside tenacity.

``python -m benchmarks.runners.tricks`` sends activities through ``send_activities`` over an
instant in-process transport (no network: the client's own CPU only), once as the library runs
(first attempt bare, tenacity from the first failure) and once with every call entering tenacity,
alternating rounds, and prints the CPU per request of each and their ratio as JSON.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Mapping
from typing import Any

import mxo_async as mxo
from mxo_async._calls import Caller
from mxo_async._sending import Call
from mxo_async._transport import RawResponse

OK = RawResponse(200, {}, b'{"tid":"d290f1ee-6c54-4b01-90e6-d701748f0851","errors":[]}')
TOKEN = RawResponse(200, {}, b'{"access_token":"tok","expires_in":3600}')


class Instant:
    """Answers at once: what is measured is the client."""

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        time_left: float | None = None,
    ) -> RawResponse:
        return TOKEN if url.endswith("oauth2token") else OK

    async def aclose(self) -> None:
        pass


async def _always_tenacity(self: Caller, call: Call[Any]) -> tuple[Any, int]:
    self._stats.calls += 1
    return await self._retry(call)


async def _stream(requests: int) -> None:
    async with mxo.MXOClient(
        "https://eu2.thunderhead.com", "SK", "id", "secret", transport=Instant()
    ) as client:
        source = (
            mxo.ActivityRequest(
                mxo.Customer.by_key(f"user{i}@example.com"),
                "web://shop",
                [mxo.Activity("p", "view", f"d{i % 50}")],
            )
            for i in range(requests)
        )
        async with client.send_activities(source, concurrency=64) as outcomes:
            async for outcome in outcomes:
                assert outcome.ok


def _cpu_per_request(requests: int) -> float:
    started = time.process_time()
    asyncio.run(_stream(requests))
    return (time.process_time() - started) / requests * 1e6


def main(requests: int = 20_000, rounds: int = 5) -> None:
    bare_run = Caller.run
    _cpu_per_request(2_000)  # warm-up
    bare: list[float] = []
    always: list[float] = []
    for _ in range(rounds):
        Caller.run = bare_run  # type: ignore[method-assign]
        bare.append(_cpu_per_request(requests))
        Caller.run = _always_tenacity  # type: ignore[method-assign]
        always.append(_cpu_per_request(requests))
    Caller.run = bare_run  # type: ignore[method-assign]
    ratios = [a / b for a, b in zip(always, bare, strict=True)]
    print(
        json.dumps(
            {
                "first_attempt_bare_us": round(statistics.median(bare), 2),
                "every_call_through_tenacity_us": round(statistics.median(always), 2),
                "ratio": round(statistics.median(ratios), 3),
                "rounds": rounds,
                "requests": requests,
            }
        )
    )


if __name__ == "__main__":
    main()
