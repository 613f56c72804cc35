"""ErasureSweep: one GDPR erasure sweep worked by any number of processes, on Redis.

``sweep = ErasureSweep(redis, "gdpr-2026-12")``; ``await sweep.enqueue(customers)`` once (again is
harmless: a customer is queued once per sweep); ``await sweep.work(client)`` in as many processes
as wanted; ``await sweep.status()``; ``await sweep.export("audit.csv")``.

Keys (one ``{name}`` hash tag, so one Redis Cluster slot): ``queue`` (a stream, one entry per
customer to erase, read by the consumer group ``erasers``), ``seen`` (the customers ever queued),
``state`` and ``records`` (per customer: its outcome, and its record in the journal's format),
``audit`` (a stream of every record written, in order) and ``counts``.

Each outcome is written by one Lua script together with the entry's ``XACK``, and only if that
``XACK`` acknowledged it: a customer whose delete was sent twice (its worker was killed and the
entry reclaimed) is recorded once. A delete whose worker died before the script ran is sent
again by the worker that reclaims it (deletes are idempotent): at most the deletes in flight at
a crash are sent twice. Such a customer may be recorded ``not_found``: the lost first delete
erased it, the second found nothing. Either way MXO holds nothing of it.

Durability is Redis's: with ``appendonly yes`` and ``appendfsync always`` an outcome is on disk
before its script returns, so a crash of Redis loses none; with ``appendfsync everysec`` (the
default) up to a second of outcomes can be lost, and their customers are erased again (the
entries come back pending). Without persistence a restart loses the sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import IO, Any, Literal

import attrs
import orjson
from redis.exceptions import ResponseError

from .._audit import export_records
from .._client import MXOClient
from .._errors import MXOError
from .._journal import encode_line
from .._models import Customer, Erasure, Outcome
from . import _stream_scripts
from ._base import text
from ._group import AnyRedis, Entry, GroupConsumer, default_consumer
from ._records import customer_of, customer_text

__all__ = ["EnqueueProgress", "ErasureSweep", "SweepStats", "SweepStatus"]

_log = logging.getLogger("mxo_async.redis")
GROUP = "erasers"
_CHUNK = 500


@attrs.frozen
class EnqueueProgress:
    """How far an :meth:`ErasureSweep.enqueue` got: customers read, queued, already queued."""

    read: int
    queued: int
    duplicates: int


@attrs.frozen
class SweepStatus:
    """A sweep's state, counted in Redis (every worker's outcomes).

    ``customers`` were ever queued; ``pending`` wait for a worker; ``in_flight`` maps each
    consumer (worker) to the customers it holds; ``erased``, ``not_found`` and ``failed`` are
    final outcomes (a failed customer queued again by ``retry_failed`` is pending again).
    """

    customers: int
    pending: int
    in_flight: dict[str, int]
    erased: int
    not_found: int
    failed: int

    @property
    def done(self) -> bool:
        """True when every queued customer has an outcome."""
        return self.pending == 0 and not any(self.in_flight.values())


@attrs.define
class SweepStats:
    """What one worker did: customers read, outcomes recorded by kind, held now."""

    read: int = 0
    reclaimed: int = 0
    erased: int = 0
    not_found: int = 0
    failed: int = 0
    duplicates: int = 0  # outcomes another worker had recorded first (not recorded again)
    held: int = 0

    @property
    def settled(self) -> int:
        return self.erased + self.not_found + self.failed

    def as_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "settled": self.settled}


class ErasureSweep:
    """One erasure sweep kept in Redis; see the module docstring.

    Args:
        redis: a ``redis.asyncio.Redis`` (or ``RedisCluster``) you own and close.
        name: the sweep's name (no braces): it names every key.
    """

    def __init__(self, redis: AnyRedis, name: str) -> None:
        if not name or "{" in name or "}" in name:
            raise ValueError("a sweep name is a non-empty string without braces")
        self.redis = redis
        self.name = name
        prefix = f"mxo:sweep:{{{name}}}:"
        self.queue = prefix + "queue"
        self.seen = prefix + "seen"
        self.state = prefix + "state"
        self.records = prefix + "records"
        self.audit = prefix + "audit"
        self.counts = prefix + "counts"
        self.stats = SweepStats()
        self._enqueue = redis.register_script(_stream_scripts.ENQUEUE)
        self._settle = redis.register_script(_stream_scripts.SWEEP_SETTLE)
        self._retry = redis.register_script(_stream_scripts.RETRY_FAILED)
        self._reader: GroupConsumer | None = None
        self._stopping = asyncio.Event()

    # -- queueing ----------------------------------------------------------------------------

    async def enqueue(
        self,
        customers: Iterable[Customer] | AsyncIterable[Customer],
        *,
        on_progress: Callable[[EnqueueProgress], None] | None = None,
    ) -> EnqueueProgress:
        """Queue each customer not queued before in this sweep, reading ``customers`` as a
        stream (500 at a time). Safe to run again after a crash: what was queued stays queued
        once. ``on_progress`` is called after each chunk."""
        await self._create_group()
        read = queued = 0
        chunk: list[str] = []

        async def flush() -> None:
            nonlocal queued
            if chunk:
                added = await self._enqueue(keys=[self.queue, self.seen, self.counts], args=chunk)
                queued += int(added)
                chunk.clear()
                if on_progress is not None:
                    on_progress(EnqueueProgress(read, queued, read - queued))

        async for customer in _aiter(customers):
            if not isinstance(customer, Customer):
                raise TypeError(f"expected a Customer, got {type(customer).__name__}")
            chunk.append(customer_text(customer))
            read += 1
            if len(chunk) >= _CHUNK:
                await flush()
        await flush()
        return EnqueueProgress(read, queued, read - queued)

    async def retry_failed(self) -> int:
        """Queue every customer whose outcome is ``failed`` again; return how many."""
        queued = 0
        batch: list[str] = []
        async for customer, outcome in self.redis.hscan_iter(self.state, count=1000):
            if text(outcome) == "failed":
                batch.append(text(customer))
        for start in range(0, len(batch), _CHUNK):
            args = batch[start : start + _CHUNK]
            queued += int(await self._retry(keys=[self.queue, self.state, self.counts], args=args))
        return queued

    async def _create_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.queue, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- reading ------------------------------------------------------------------------------

    async def status(self) -> SweepStatus:
        """The sweep's state; see :class:`SweepStatus`."""
        counts = {text(k): int(v) for k, v in (await self.redis.hgetall(self.counts)).items()}
        customers = int(await self.redis.scard(self.seen))
        in_flight: dict[str, int] = {}
        with contextlib.suppress(ResponseError):  # no queue or group yet: nothing in flight
            summary = await self.redis.xpending(self.queue, GROUP)
            for consumer in summary.get("consumers") or []:
                in_flight[text(consumer["name"])] = int(consumer["pending"])
        unsettled = counts.get("enqueued", 0) - counts.get("settled", 0)
        return SweepStatus(
            customers,
            max(0, unsettled - sum(in_flight.values())),
            in_flight,
            counts.get("erased", 0),
            counts.get("not_found", 0),
            counts.get("failed", 0),
        )

    async def export(
        self,
        path: str | os.PathLike[str] | IO[str],
        format: Literal["csv", "json"] = "csv",
    ) -> int:
        """Write one row per customer with an outcome, in the file journal's audit format
        (:func:`mxo_async.export_journal`), ordered by time; return the number of rows."""
        records = []
        async for _, line in self.redis.hscan_iter(self.records, count=1000):
            records.append(orjson.loads(line))
        records.sort(key=lambda record: record["time"])
        return await asyncio.to_thread(export_records, records, path, format)

    # -- working ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading; :meth:`work` then finishes the deletes in flight, records them and
        returns."""
        self._stopping.set()
        if self._reader is not None:
            self._reader.stopping = True

    async def work(
        self,
        client: MXOClient,
        concurrency: int = 16,
        *,
        consumer: str | None = None,
        claim_after: float = 60.0,
        max_deliveries: int = 5,
        until_done: bool = True,
        block: float = 1.0,
    ) -> SweepStats:
        """Erase queued customers with ``concurrency`` deletes in flight until the sweep is done
        (``until_done``; else until :meth:`stop`). Returns this worker's stats.

        ``claim_after`` seconds after a worker last showed it holds a customer, another worker
        reclaims it; a customer delivered more than ``max_deliveries`` times (it kills its
        workers) is recorded as failed.
        """
        reader = self._reader = GroupConsumer(
            self.redis,
            self.queue,
            GROUP,
            consumer or default_consumer(),
            claim_after=claim_after,
            block=block,
        )
        await reader.call("XGROUP CREATE", reader.ensure_group)
        entries: dict[int, Entry] = {}
        pending: list[tuple[Entry, Outcome[Customer, Erasure]]] = []
        wake = asyncio.Event()
        finished = False

        async def source() -> AsyncIterator[Customer]:
            index = 0
            while not self._stopping.is_set():
                batch = await reader.read(concurrency * 2)
                if not batch:
                    if until_done and (await reader.call("status", self.status)).done:
                        return
                    continue
                for entry in batch:
                    self.stats.read += 1
                    self.stats.held += 1
                    if entry.deliveries > 1:
                        self.stats.reclaimed += 1
                    try:
                        customer = customer_of(entry.fields["customer"])
                    except (KeyError, ValueError, TypeError, MXOError):
                        _log.error("sweep %s: entry %s holds no customer", self.name, entry.id)
                        continue
                    if entry.deliveries > max_deliveries:
                        error = MXOError(f"delivered {entry.deliveries} times without an outcome")
                        pending.append((entry, Outcome(customer, None, error, 0, -1)))
                        wake.set()
                        continue
                    entries[index] = entry
                    index += 1
                    yield customer

        async def recorder() -> None:
            while not (finished and not pending):
                if not pending:
                    wake.clear()
                    await wake.wait()
                    continue
                batch = pending[:256]
                del pending[:256]
                await reader.call("record", functools.partial(self._record, batch, client.target))

        heartbeat = asyncio.create_task(reader.heartbeat())
        writer = asyncio.create_task(recorder())
        try:
            async with client.delete_customers(source(), concurrency=concurrency) as outcomes:
                async for outcome in outcomes:
                    pending.append((entries.pop(outcome.index), outcome))
                    wake.set()
        finally:
            finished = True
            wake.set()
            try:
                await writer
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
        return self.stats

    async def _record(
        self, batch: list[tuple[Entry, Outcome[Customer, Erasure]]], target: dict[str, str]
    ) -> None:
        now = datetime.now(UTC)
        args: list[str] = [GROUP]
        for entry, outcome in batch:
            line = encode_line(outcome, now, target)
            state = orjson.loads(line)["outcome"]
            args += [entry.id, entry.fields["customer"], state, line.decode().rstrip("\n")]
        recorded = int(await self._settle(keys=self._settle_keys, args=args))
        assert self._reader is not None
        for entry, outcome in batch:
            self._reader.held.discard(entry.id)
            self.stats.held -= 1
            if outcome.error is not None or outcome.result is None:
                self.stats.failed += 1
            elif outcome.result.found:
                self.stats.erased += 1
            else:
                self.stats.not_found += 1
        self.stats.duplicates += len(batch) - recorded

    @property
    def _settle_keys(self) -> list[str]:
        return [self.queue, self.state, self.records, self.audit, self.counts]


async def _aiter(items: Iterable[Customer] | AsyncIterable[Customer]) -> AsyncIterator[Customer]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
