"""RedisCoordinator in one process, against a real redis-server and the in-process emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

import mxo_async as mxo
from mxo_async.emulator import Emulator, EmulatorConfig, Faults
from mxo_async.redis import CoordinatorError, RedisCoordinator, _scripts
from mxo_async.redis._base import Keys
from mxo_async.redis._link import Link

from .redis_server import free_port


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(keep_activities=False)) as emu:
        yield emu


def client_for(
    emu: Emulator,
    coordinator: RedisCoordinator,
    rate: float | None = None,
    on_event: mxo.EventHandler | None = None,
    retry: mxo.RetryPolicy | None = None,
) -> mxo.MXOClient:
    return mxo.MXOClient(
        emu.base_url,
        emu.site_key,
        emu.client_id,
        emu.client_secret,
        token_url=emu.token_url,
        limits=mxo.Limits(rate=rate),
        coordinator=coordinator,
        on_event=on_event,
        retry=retry,
    )


def request(n: int) -> mxo.ActivityRequest:
    return mxo.ActivityRequest(
        mxo.Customer.by_key(f"user{n}"), "web://unit", [mxo.Activity("web", "view")]
    )


def link_of(client: mxo.MXOClient) -> Link:
    link = client._fleet
    assert isinstance(link, Link)
    return link


class OldRedis(Redis):
    """A real connection whose INFO claims an older server."""

    async def info(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"redis_version": "6.0.16"}


async def test_redis_older_than_6_2_is_an_error_at_startup(
    emulator: Emulator, redis: Redis
) -> None:
    """A Redis that reports 6.0 makes entering the client raise CoordinatorError."""
    old = OldRedis(connection_pool=redis.connection_pool)
    with pytest.raises(CoordinatorError, match=r"Redis >= 6\.2, found 6\.0"):
        async with client_for(emulator, RedisCoordinator(old, namespace="old")):
            pass


async def test_a_script_redis_refuses_is_an_error_at_startup(
    emulator: Emulator, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Lua script that does not compile makes entering the client raise CoordinatorError."""
    monkeypatch.setattr(_scripts, "SCRIPTS", (*_scripts.SCRIPTS, "return {"))
    with pytest.raises(CoordinatorError, match="refused a fleet script"):
        async with client_for(emulator, RedisCoordinator(redis, namespace="bad")):
            pass


async def test_redis_down_at_start_runs_alone_at_its_share(emulator: Emulator) -> None:
    """With Redis unreachable the client delivers on its own throttle at rate/expected_processes."""
    events: list[mxo.Event] = []
    down = Redis(port=free_port())
    coordinator = RedisCoordinator(down, namespace="down", expected_processes=4, timeout=1)
    try:
        async with client_for(emulator, coordinator, rate=100, on_event=events.append) as client:
            result = await client.send_request(request(1))
            rate = client.stats.throttle.rate
    finally:
        await down.aclose()
    # The reason is the failure's type: refused at once, or retried by redis-py until timeout.
    fleet = [e.sharing for e in events if isinstance(e, mxo.FleetSharingChanged)]
    assert result.ok
    assert 25.0 == rate
    assert [False] == fleet


async def test_at_full_speed_redis_sees_few_round_trips_per_request(
    emulator: Emulator, redis: Redis
) -> None:
    """A busy process leases in batches: at most 0.05 Redis round trips per API request."""
    async with client_for(
        emulator, RedisCoordinator(redis, namespace="speed"), rate=3000
    ) as client:
        async with client.send_activities(map(request, range(2000))) as outcomes:
            delivered = sum([o.ok async for o in outcomes])
        trips = link_of(client).round_trips
    assert 2000 == delivered
    assert trips / 2000 <= 0.05


async def test_a_busy_process_has_its_next_lease_before_this_one_runs_out(
    emulator: Emulator, redis: Redis
) -> None:
    """Paced by the fleet's rate, a busy process waits for a lease only once: for its first."""
    async with client_for(
        emulator, RedisCoordinator(redis, namespace="ahead"), rate=3000
    ) as client:
        async with client.send_activities(map(request, range(3000))) as outcomes:
            delivered = sum([o.ok async for o in outcomes])
        waits = link_of(client).lease_waits
    assert 3000 == delivered
    assert 1 == waits


async def test_an_idle_process_holds_no_permits(emulator: Emulator, redis: Redis) -> None:
    """Leased permits a process does not use within their slot (plus a grace) are gone."""
    async with client_for(emulator, RedisCoordinator(redis, namespace="idle"), rate=50) as client:
        await client.send_request(request(1))
        link = link_of(client)
        clock = link.clock
        held_at_once = link.permits(clock())
        await asyncio.sleep(0.6)  # a lease covers at most lease_span (0.5 s) of slots
        held_later = link.permits(clock())
    assert held_at_once > 0
    assert 0 == held_later


async def test_every_key_of_a_tenant_is_in_one_hash_slot() -> None:
    """All keys carry the {namespace} hash tag, so Redis Cluster runs the scripts on one node."""
    keys = Keys("shop", "0123456789abcdef")
    slots = {key_slot(k.encode()) for k in (keys.rate, keys.pause, keys.token, keys.lock)}
    assert 1 == len(slots)


def test_a_namespace_with_braces_is_refused() -> None:
    """A brace in the namespace would break the hash tag: refused at construction."""
    with pytest.raises(ValueError, match="without braces"):
        RedisCoordinator(Redis(), namespace="a{b}")


async def test_a_401_drops_only_the_token_that_was_sent(redis: Redis) -> None:
    """Invalidating a token another process has replaced since leaves the new one cached."""
    coordinator = RedisCoordinator(redis, namespace="tok", share_token=True)
    keys = Keys("tok", "t")
    await redis.set(keys.token, "new-token", px=60_000)
    await coordinator.run(_scripts.UNLOCK, [keys.token], ["old-token"])
    kept = await redis.get(keys.token)
    await coordinator.run(_scripts.UNLOCK, [keys.token], ["new-token"])
    assert b"new-token" == kept
    assert await redis.get(keys.token) is None


async def sync(coordinator: RedisCoordinator, keys: Keys, **args: float) -> list[int]:
    values = {"want": 0, "limit": 0, "sent": 0, "ok": 0, "pressure": 0, **args}
    argv = [*values.values(), 0, 1.0, keys.channel]
    return [int(x) for x in await coordinator.run(_scripts.SYNC, [keys.rate, keys.pause], argv)]


async def test_a_cut_applies_once_per_cooldown_to_the_fleet_rate(redis: Redis) -> None:
    """Two processes asking for a cut at once cut the shared rate once, from the fleet's rate."""
    coordinator = RedisCoordinator(redis, namespace="cut")
    keys = Keys("cut", "t")
    await sync(coordinator, keys, sent=100, ok=50)
    await asyncio.sleep(0.5)  # one meter bucket: the fleet sent ~200 req/s, got ~100 accepted
    first = await sync(coordinator, keys, pressure=0.5)
    second = await sync(coordinator, keys, pressure=0.5)
    rate = float(await redis.hget(keys.rate, "arate") or 0)
    assert 1 == first[5]
    assert 0 == second[5]
    assert 80 < rate < 120


async def test_the_shared_rate_regrows_along_the_cubic_curve(redis: Redis) -> None:
    """After a cut, successes reported by any process raise the fleet's rate again."""
    coordinator = RedisCoordinator(redis, namespace="grow")
    keys = Keys("grow", "t")
    await sync(coordinator, keys, sent=100, ok=50)
    await asyncio.sleep(0.5)
    await sync(coordinator, keys, pressure=0.5)
    after_cut = float(await redis.hget(keys.rate, "arate") or 0)
    await asyncio.sleep(0.5)
    await sync(coordinator, keys, sent=100, ok=100)
    regrown = float(await redis.hget(keys.rate, "arate") or 0)
    assert regrown > after_cut


async def test_a_random_429_storm_gets_the_fleet_rate_back(redis: Redis) -> None:
    """Half the answers 429 at random (faults, not a capacity): a probe undoes the fleet's cut."""
    events: list[mxo.Event] = []
    config = EmulatorConfig(keep_activities=False, faults=Faults(status_429_bare=0.5), seed=5)
    found: list[bytes | str | None] = []
    async with Emulator(config) as emu:
        coordinator = RedisCoordinator(redis, namespace="storm")
        # No retries: a 429 is an outcome, and the run ends at the deadline, not after backoffs.
        retry = mxo.RetryPolicy(max_attempts=1, max_rate_limited_attempts=1)
        async with client_for(emu, coordinator, on_event=events.append, retry=retry) as client:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 8.0

            async def requests() -> AsyncIterator[mxo.ActivityRequest]:
                n = 0
                while loop.time() < deadline:
                    yield request(n)
                    n += 1
                # The fleet's adaptive rate as the storm goes on (cut: a number; undone: none).
                found.append(await redis.hget(link_of(client).keys.rate, "arate"))

            async with client.send_activities(requests()) as outcomes:
                async for _ in outcomes:
                    pass
    reasons = {e.reason for e in events if isinstance(e, mxo.ConcurrencyChanged)}
    assert ({"overload", "restored"} <= reasons, found) == (True, [None]), reasons


async def test_a_pause_reaches_the_other_processes_at_once(
    emulator: Emulator, redis_server: Any
) -> None:
    """A Retry-After one client hears pauses a client of another coordinator within milliseconds."""
    one, two = Redis.from_url(redis_server.url), Redis.from_url(redis_server.url)
    try:
        async with client_for(emulator, RedisCoordinator(one, namespace="p"), rate=100) as a:
            async with client_for(emulator, RedisCoordinator(two, namespace="p"), rate=100) as b:
                a._throttle.pause(2.0)
                for _ in range(100):
                    if b.stats.throttle.paused_until is not None:
                        break
                    await asyncio.sleep(0.005)
                remaining = b.stats.throttle.pause_remaining
    finally:
        await one.aclose()
        await two.aclose()
    assert 1.5 < remaining <= 2.0
