"""Token storm: how many token requests do 1,000 concurrent calls cause when the token is stale?

``python -m benchmarks.runners.tokens --calls 1000``

Runs the emulator in this process (its counters are the server-side proof) with a short token
lifetime, and three scenarios, each on a client that already holds a token:

* ``expired``: the token is past its expiry when the 1,000 calls start (all must wait);
* ``revoked``: the server revoked every token, so the 1,000 calls all get 401 at once;
* ``soft_window``: the token is inside its proactive-refresh window (calls keep using it).
"""

from __future__ import annotations

import argparse
import asyncio

import mxo_async as mxo
from mxo_async.emulator import Emulator, EmulatorConfig

from .._common import call_args, emit

TTL = 2.0  # seconds: expired / revoked scenarios
# The soft-window scenario needs a window wider than the storm takes: with 20 s the proactive
# refresh starts at 16-18 s and the old token stays valid until 20 s (hard window 1 s).
SOFT_TTL = 20.0


async def _storm(calls: int, scenario: str) -> dict[str, int | str]:
    ttl = SOFT_TTL if scenario == "soft_window" else TTL
    config = EmulatorConfig(token_ttl=ttl, keep_activities=False)
    async with (
        Emulator(config) as emulator,
        mxo.MXOClient(
            emulator.base_url,
            emulator.site_key,
            emulator.client_id,
            emulator.client_secret,
            limits=mxo.Limits(max_connections=100),
        ) as client,
    ):
        await client.send_activity(*call_args(0))  # holds a token now
        if scenario == "expired":
            await asyncio.sleep(ttl + 0.05)
        elif scenario == "revoked":
            emulator.revoke_tokens()
        elif scenario == "soft_window":
            await asyncio.sleep(ttl * 0.91)  # past any jittered refresh point, before hard
        server0 = emulator.counters.token_requests
        client0 = client.stats.token_requests
        results = await asyncio.gather(
            *(client.send_activity(*call_args(i)) for i in range(1, calls + 1)),
            return_exceptions=True,
        )
        await asyncio.sleep(0.05)  # let a background refresh land
        stats = client.stats
        return {
            "scenario": scenario,
            "calls": calls,
            "failures": sum(isinstance(r, BaseException) for r in results),
            "token_requests_server": emulator.counters.token_requests - server0,
            "token_requests_client": stats.token_requests - client0,
            "token_replays": stats.token_replays,
            "unauthorized_responses": emulator.counters.unauthorized,
        }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runners.tokens")
    parser.add_argument("--calls", type=int, default=1_000)
    args = parser.parse_args()
    for scenario in ("expired", "revoked", "soft_window"):
        emit(asyncio.run(_storm(args.calls, scenario)))


if __name__ == "__main__":
    main()
