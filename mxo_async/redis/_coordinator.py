"""RedisCoordinator: what a user builds and passes to ``MXOClient(coordinator=...)``."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from .._config import Limits
from .._events import EventHandler
from . import _scripts
from ._base import CoordinatorError, Keys
from ._link import Link

__all__ = ["RedisCoordinator"]

_MIN_VERSION = (6, 2)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def _check_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or not namespace or "{" in namespace or "}" in namespace:
        raise ValueError("namespace must be a non-empty string without braces")
    return namespace


class RedisCoordinator:
    """Coordinates every client attached to it, in this and other processes, through Redis.

    Args:
        redis: a ``redis.asyncio.Redis`` (or ``RedisCluster``) you own and close.
        namespace: names the fleet; it becomes the ``{namespace}`` hash tag of every key.
        share_token: cache one access token for the whole fleet in Redis (the token then sits in
            Redis: restrict its keys with ACLs and use TLS, ``rediss://``).
        expected_processes: how many processes share the tenant; while Redis is unreachable each
            runs alone at ``Limits.rate / expected_processes``.
        lease_span: each lease asks for this many seconds of the process's recent rate.
        burst: seconds of the fleet's rate a lease may start early by (GCRA burst tolerance).
        timeout: seconds one Redis round trip may take before Redis counts as unreachable.
        reconnect: first and longest delay between reconnection attempts (doubling, jittered).
        clock: monotonic clock in seconds (tests inject one).
    """

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        namespace: str,
        share_token: bool = False,
        expected_processes: int = 1,
        lease_span: float = 0.5,
        burst: float = 0.0,
        timeout: float = 2.0,
        reconnect: tuple[float, float] = (0.1, 5.0),
        clock: Clock = time.monotonic,
    ) -> None:
        self.namespace = _check_namespace(namespace)
        if expected_processes < 1:
            raise ValueError("expected_processes must be >= 1")
        if not (lease_span > 0 and burst >= 0 and timeout > 0 and 0 < reconnect[0] <= reconnect[1]):
            raise ValueError(
                "lease_span and timeout must be > 0, burst >= 0, reconnect (a, b) 0<a<=b"
            )
        self.redis = redis
        self.share_token = share_token
        self.expected_processes = expected_processes
        self.lease_span = lease_span
        self.burst = burst
        self.timeout = timeout
        self.reconnect = reconnect
        self.clock = clock
        self._scripts = {src: redis.register_script(src) for src in _scripts.SCRIPTS}

    def __repr__(self) -> str:
        return (
            f"RedisCoordinator(namespace={self.namespace!r}, share_token={self.share_token}, "
            f"expected_processes={self.expected_processes})"
        )

    def attach(
        self,
        *,
        base_url: str,
        site_key: str,
        client_id: str,
        limits: Limits,
        on_event: EventHandler | None,
        sleep: Sleep,
    ) -> Link:
        """Connect one client: its tenant is hashed into the keys, its limits into the fallback."""
        tenant = hashlib.sha256(f"{base_url}\0{site_key}\0{client_id}".encode()).hexdigest()[:16]
        return Link(self, Keys(self.namespace, tenant), limits, on_event, sleep)

    async def run(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of ``_scripts`` within ``timeout``."""
        async with asyncio.timeout(self.timeout):
            return await self._scripts[script](keys=list(keys), args=list(args))

    async def check(self) -> None:
        """Fail with :class:`CoordinatorError` unless Redis is >= 6.2 and loads every script.

        Raises the Redis or network error as is when Redis is unreachable.
        """
        async with asyncio.timeout(self.timeout):
            info = await self.redis.info("server")
            version = _version(info)
            if version < _MIN_VERSION:
                found = ".".join(map(str, version))
                raise CoordinatorError(f"the fleet needs Redis >= 6.2, found {found}")
            try:
                for src in _scripts.SCRIPTS:
                    await self.redis.script_load(src)
            except ResponseError as error:
                raise CoordinatorError(f"Redis refused a fleet script: {error}") from error


def _version(info: Any) -> tuple[int, ...]:
    """``redis_version`` from INFO (a cluster answers one dict per node: take the oldest)."""
    if "redis_version" in info:
        return tuple(int(part) for part in str(info["redis_version"]).split(".")[:2])
    versions = [_version(node) for node in info.values() if isinstance(node, dict)]
    return min(versions) if versions else (0,)
