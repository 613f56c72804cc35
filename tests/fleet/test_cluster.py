"""The coordinator on a local 3-master Redis Cluster: every script runs, the rate is shared."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

import mxo_async as mxo
from mxo_async.emulator import Emulator, EmulatorConfig
from mxo_async.redis import RedisCoordinator

from .redis_server import RedisServer, start_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[RedisServer]]:
    servers: list[RedisServer] = []
    try:
        servers = start_cluster(tmp_path / "cluster")
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(keep_activities=False)) as emu:
        yield emu


async def send_for(client: mxo.MXOClient, tag: str, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        customer = mxo.Customer.by_key(f"{tag}-{sent}")
        await client.send_activity(customer, "web://cluster", mxo.Activity("web", "view"))
        sent += 1
    return sent


async def test_two_processes_share_one_rate_through_a_redis_cluster(
    cluster: list[RedisServer], emulator: Emulator
) -> None:
    """Two clients, each with its own cluster connection, together send at the fleet's rate."""
    rate, seconds = 100.0, 2.0
    connections = [RedisCluster(host="127.0.0.1", port=cluster[0].port) for _ in range(2)]
    try:
        clients = [
            mxo.MXOClient(
                emulator.base_url,
                emulator.site_key,
                emulator.client_id,
                emulator.client_secret,
                token_url=emulator.token_url,
                limits=mxo.Limits(rate=rate),
                coordinator=RedisCoordinator(conn, namespace="cl", expected_processes=2),
            )
            for conn in connections
        ]
        async with clients[0] as one, clients[1] as two:
            counts = await asyncio.gather(
                *(
                    asyncio.gather(*(send_for(c, f"{n}", seconds) for n in range(8)))
                    for c in (one, two)
                )
            )
            sharing = [c._fleet is not None and c._fleet.limiter.sharing for c in (one, two)]
    finally:
        for conn in connections:
            await conn.aclose()
    total = sum(sum(c) for c in counts)
    print(f"cluster: {total / seconds:.0f} req/s for a fleet rate of {rate:g}")
    assert [True, True] == sharing
    assert 0.8 * rate * seconds <= total <= 1.1 * rate * seconds
