"""What the stream workers share: one consumer of a consumer group, riding out Redis outages.

Entries come from ``XREADGROUP`` (new ones) and ``XAUTOCLAIM`` (those another consumer held
longer than ``claim_after`` without acknowledging them: it died, or it is stuck). The consumer
keeps the entries it holds from being reclaimed by refreshing their idle time (``XCLAIM ...
JUSTID``, which does not count a delivery) every third of ``claim_after``.

Redis unreachable (restarted, failed over, a network cut) never ends a worker: every call is
retried with backoff until it succeeds or the worker is stopped; what was settled meanwhile waits
in memory for its ACK.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from ._base import FAILURES, text

__all__ = ["Entry", "GroupConsumer", "default_consumer"]

_log = logging.getLogger("mxo_async.redis")
T = TypeVar("T")
AnyRedis = Redis | RedisCluster


def default_consumer() -> str:
    """``host-pid``: unique per live process, readable in ``XINFO CONSUMERS``."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Entry:
    """One delivered stream entry: its ID, fields and how many times it was delivered."""

    __slots__ = ("deliveries", "fields", "id")

    def __init__(self, id: str, fields: dict[str, str], deliveries: int) -> None:
        self.id = id
        self.fields = fields
        self.deliveries = deliveries

    def __repr__(self) -> str:
        return f"Entry(id={self.id!r}, deliveries={self.deliveries})"


class GroupConsumer:
    """One consumer of ``group`` on ``stream``: reads, reclaims, heartbeats and retries."""

    def __init__(
        self,
        redis: AnyRedis,
        stream: str,
        group: str,
        consumer: str,
        *,
        claim_after: float,
        block: float,
        reconnect: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        if claim_after <= 0:
            raise ValueError(f"claim_after must be > 0, got {claim_after!r}")
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.claim_after = claim_after
        self.block = block
        self.reconnect = reconnect
        self.held: set[str] = set()  # delivered to us, not acknowledged yet
        self.trimmed = 0  # reclaimed IDs whose entry was deleted (trimmed) meanwhile
        self.stopping = False
        self._cursor = "0-0"
        self._next_claim = 0.0
        self._down = False

    async def call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation()``, retried with backoff while Redis is unreachable."""
        delay = self.reconnect[0]
        while True:
            try:
                result = await operation()
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis came back without our group (restarted without persistence).
                _log.warning("consumer group %s is gone from %s: creating it", self.group, what)
                await self.ensure_group()
                continue
            except FAILURES as exc:
                if not self._down:
                    _log.warning("redis unreachable (%s: %s): retrying", what, type(exc).__name__)
                    self._down = True
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
                delay = min(delay * 2, self.reconnect[1])
                continue
            if self._down:
                _log.warning("redis reachable again")
                self._down = False
            return result

    async def ensure_group(self) -> None:
        """Create the group at the stream's start (and the stream) unless it exists."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, limit: int) -> list[Entry]:
        """Up to ``limit`` entries: reclaimed ones when a reclaim is due, else new ones
        (waiting up to ``block`` seconds for them)."""
        now = time.monotonic()
        if now >= self._next_claim:
            claimed = await self._reclaim(limit)
            if claimed:
                return claimed
            self._next_claim = now + self.claim_after / 4
        block_ms = max(1, int(self.block * 1000))

        async def read_new() -> Any:
            return await self.redis.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=limit, block=block_ms
            )

        answer = await self.call("XREADGROUP", read_new)
        entries = [
            Entry(text(entry_id), _fields(fields), 1)
            for _, items in answer or ()
            for entry_id, fields in items
        ]
        self.held.update([entry.id for entry in entries])
        return entries

    async def _reclaim(self, limit: int) -> list[Entry]:
        idle_ms = int(self.claim_after * 1000)
        cursor = self._cursor

        async def claim() -> Any:
            return await self.redis.xautoclaim(
                self.stream, self.group, self.consumer, idle_ms, cursor, count=limit
            )

        answer = await self.call("XAUTOCLAIM", claim)
        self._cursor = text(answer[0])
        deleted = answer[2] if len(answer) > 2 else []
        if deleted:
            self.trimmed += len(deleted)
            _log.error(
                "%d pending entries of %s were deleted (trimmed) before being acknowledged",
                len(deleted),
                self.stream,
            )
        # XAUTOCLAIM also hands back entries this consumer already holds (still settling, idle
        # longer than claim_after between heartbeats): they are being processed here already.
        items = [
            (entry_id, f)
            for entry_id, f in ((text(i), f) for i, f in answer[1] if f is not None)
            if entry_id not in self.held
        ]
        if not items:
            return []
        ids = [i for i, _ in items]

        async def counts() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                for entry_id in ids:
                    pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
                return await pipe.execute()

        deliveries: dict[str, int] = {}
        for rows in await self.call("XPENDING", counts):
            for row in rows:
                deliveries[text(row["message_id"])] = int(row["times_delivered"])
        entries = [Entry(i, _fields(f), deliveries.get(i, 2)) for i, f in items]
        self.held.update(ids)
        return entries

    async def heartbeat(self) -> None:
        """Forever: keep the entries we hold from looking idle to the other consumers."""
        while True:
            await asyncio.sleep(self.claim_after / 3)
            held = list(self.held)
            for start in range(0, len(held), 1000):
                chunk: list[int | bytes | str | memoryview[int]] = [*held[start : start + 1000]]

                async def refresh(chunk: list[int | bytes | str | memoryview[int]] = chunk) -> Any:
                    return await self.redis.xclaim(
                        self.stream, self.group, self.consumer, 0, chunk, justid=True
                    )

                await self.call("XCLAIM", refresh)


def _fields(fields: Any) -> dict[str, str]:
    if not fields:
        return {}
    return {
        (k.decode() if type(k) is bytes else k): (v.decode() if type(v) is bytes else v)
        for k, v in fields.items()
    }
