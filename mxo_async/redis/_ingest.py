"""ActivityStream: activities through a Redis stream, sent by a fleet of ingestion workers.

Producer: ``await ActivityStream(redis, "mxo:activities").add(request_or_record)`` appends one
entry whose one field, ``record``, is an ``mxo-async send`` NDJSON line.

Worker: ``await stream.worker("ingest").run(client)`` reads the stream as one consumer of a
consumer group, submits each entry's activities to the client's batcher (activities of one
customer context from many entries share a request) and settles each entry once its activities
settled:

* delivered: ``XACK``;
* rejected by MXO, failed for good (400, ...), invalid, unconfirmed (stored, the answer was
  unreadable) and, unless ``at_least_once``, ambiguous (may or may not be stored): one entry in
  ``<stream>:dead`` with ``record``, ``reason`` and ``error``, and the ``XACK``, in one Lua script;
* failed in a way another try may cure (5xx, 429, connection failures after the client's own
  retries; ambiguous ones with ``at_least_once``): left pending, so that a worker reclaims it
  after ``claim_after``; an entry delivered more than ``max_deliveries`` times is dead-lettered
  as ``poison``, whatever keeps it from settling (it fails, or it kills its workers);
* the credentials refused (401 from the token endpoint, 403, an unknown site key): every entry
  would fail alike, so the worker stops with the error and acknowledges nothing.

Activities without a timestamp get the time of their entry's ID: see :func:`_records.parse_entry`.

Memory: at most ``max_pending`` entries are held (read and not yet acknowledged) at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

import attrs

from .._batcher import Delivery
from .._client import MXOClient
from .._errors import (
    AmbiguousDeliveryError,
    MXOError,
    RateLimitedError,
    RejectedActivitiesError,
    ResponseFormatError,
    ServerError,
    TransportError,
)
from .._models import ActivityRequest
from .._wire import match_rejections
from ..cli._status import describe_error, describe_rejection, is_fatal
from . import _stream_scripts
from ._group import AnyRedis, Entry, GroupConsumer, default_consumer
from ._records import InputError, check_record, encode_record, parse_entry

__all__ = ["ActivityStream", "IngestWorker", "WorkerStats"]

_log = logging.getLogger("mxo_async.redis")
_ACK_BATCH = 256


@attrs.define
class WorkerStats:
    """What one worker did since it started (counters only grow, except ``held``)."""

    read: int = 0  # entries delivered to this worker (new and reclaimed)
    reclaimed: int = 0  # of which were reclaimed from another consumer (or from an earlier try)
    acked: int = 0  # acknowledged as delivered
    activities: int = 0  # activities of the acknowledged entries
    dead_lettered: dict[str, int] = attrs.Factory(Counter)  # reason -> entries
    retried: int = 0  # left pending for another delivery
    held: int = 0  # read and not yet acknowledged, now
    lag: int | None = None  # entries of the stream not yet delivered to the group (last seen)
    started: float = attrs.Factory(time.monotonic)

    @property
    def settled(self) -> int:
        return self.acked + sum(self.dead_lettered.values())

    def as_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["dead_lettered"] = dict(self.dead_lettered)
        data["settled"] = self.settled
        return data


class ActivityStream:
    """A Redis stream of activity records (``mxo-async send`` NDJSON lines).

    Args:
        redis: a ``redis.asyncio.Redis`` (or ``RedisCluster``) you own and close.
        name: the stream's key; dead letters go to ``<name>:dead``. On a Redis Cluster give the
            name a hash tag (``{mxo:activities}``) so both keys share a slot.
        maxlen: trim the stream to about this many entries on each ``add`` (``MAXLEN ~``).
            Trimming ignores consumer groups: an entry trimmed before a worker read it is lost,
            so keep it well above the backlog you expect (None: never trim).
    """

    def __init__(self, redis: AnyRedis, name: str, *, maxlen: int | None = None) -> None:
        if not name:
            raise ValueError("the stream needs a name")
        self.redis = redis
        self.name = name
        self.dead = f"{name}:dead"
        self.maxlen = maxlen

    async def add(self, record: ActivityRequest | str | Mapping[str, object]) -> str:
        """Append one entry; return its ID.

        ``record`` is an :class:`~mxo_async.ActivityRequest`, an NDJSON line of the ``send``
        schema or the same as a mapping. Lines and mappings are checked with the worker's parser
        first, so a bad record fails here rather than in a dead-letter stream.

        Raises:
            InputError: the record does not follow the ``send`` schema (a ``ValueError``).
        """
        line = (
            encode_record(record) if isinstance(record, ActivityRequest) else check_record(record)
        )
        entry_id = await self.redis.xadd(
            self.name,
            {"record": line},
            maxlen=self.maxlen,
            approximate=True,
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def worker(self, group: str, consumer: str | None = None, **options: Any) -> IngestWorker:
        """An :class:`IngestWorker` of this stream (``options`` are its keyword arguments)."""
        return IngestWorker(self, group, consumer, **options)


@attrs.define
class _Held:
    entry: Entry
    request: ActivityRequest | None
    delivery: Delivery | None
    reason: str = ""  # set when the entry is settled without a delivery
    error: str = ""


class WorkerStopped(Exception):
    """The worker stopped on an error every further entry would hit too (credentials, ...)."""


class IngestWorker:
    """One consumer of a group on an :class:`ActivityStream`; see the module docstring.

    Args:
        stream: the stream.
        group: the consumer group (created at the stream's start if missing).
        consumer: this worker's name in the group; default ``host-pid``. A restarted worker
            given the same name gets its own pending entries back at once.
        batch: entries read per call.
        max_pending: entries held at most (read, not acknowledged): the worker's memory bound.
        claim_after: seconds an entry may stay unacknowledged by a consumer before another
            reclaims it (the time a dead worker's entries wait).
        max_deliveries: an entry delivered more often than this is dead-lettered as ``poison``.
        at_least_once: ambiguous entries are retried rather than dead-lettered; give the client
            ``RetryPolicy(retry_ambiguous=True)`` as well.
        block: seconds one read waits for new entries.
        max_activities, max_latency: the batcher's (activities per request, seconds an
            activity may wait for others of its context).
    """

    def __init__(
        self,
        stream: ActivityStream,
        group: str,
        consumer: str | None = None,
        *,
        batch: int = 200,
        max_pending: int = 5_000,
        claim_after: float = 60.0,
        max_deliveries: int = 5,
        at_least_once: bool = False,
        block: float = 1.0,
        max_activities: int = 100,
        max_latency: float = 0.1,
    ) -> None:
        if batch < 1 or max_pending < 1 or max_deliveries < 1:
            raise ValueError("batch, max_pending and max_deliveries must be >= 1")
        self.stream = stream
        self.group = group
        self.consumer = consumer or default_consumer()
        self.batch = batch
        self.max_pending = max_pending
        self.max_deliveries = max_deliveries
        self.at_least_once = at_least_once
        self.max_activities = max_activities
        self.max_latency = max_latency
        self.stats = WorkerStats()
        self._reader = GroupConsumer(
            stream.redis,
            stream.name,
            group,
            self.consumer,
            claim_after=claim_after,
            block=block,
        )
        self._window: deque[_Held] = deque()
        self._space = asyncio.Event()
        self._arrived = asyncio.Event()
        self._acks: list[tuple[_Held, str, str]] = []
        self._stop = asyncio.Event()
        self._fatal: BaseException | None = None
        self._key_attribute = "customerkey"
        self._script = stream.redis.register_script(_stream_scripts.INGEST_SETTLE)

    def stop(self) -> None:
        """Stop reading; :meth:`run` then sends what it holds, settles it and returns."""
        self._reader.stopping = True
        self._stop.set()
        self._space.set()
        self._arrived.set()

    async def run(self, client: MXOClient) -> WorkerStats:
        """Work until :meth:`stop` (or a cancellation: held entries stay pending, to be
        reclaimed). Returns the stats.

        Raises:
            WorkerStopped: the credentials were refused (nothing of it was acknowledged).
        """
        self._key_attribute = client.target["customer_key_attribute"]
        await self._reader.call("XGROUP CREATE", self._reader.ensure_group)
        batcher = client.batcher(
            max_activities=self.max_activities,
            max_latency=self.max_latency,
            # Entries are the bound that matters (one holds up to 100 activities).
            max_pending=self.max_pending * 100,
        )
        async with batcher, asyncio.TaskGroup() as tasks:
            heartbeat = tasks.create_task(self._reader.heartbeat())
            lag = tasks.create_task(self._watch_lag())
            settler = tasks.create_task(self._settle_loop())
            try:
                await self._read_loop(batcher)
            except asyncio.CancelledError:
                # A hard stop: acknowledge nothing more; what is held is reclaimed elsewhere.
                for task in (settler, heartbeat, lag):
                    task.cancel()
                raise
            except BaseException:
                await self._wind_down(batcher, settler)
                raise
            await self._wind_down(batcher, settler)
            heartbeat.cancel()
            lag.cancel()
        if self._fatal is not None:
            raise WorkerStopped(str(self._fatal)) from self._fatal
        return self.stats

    async def _wind_down(self, batcher: Any, settler: asyncio.Task[None]) -> None:
        """Stop (or an error): what is held is sent now, settled and acknowledged."""
        self._reader.stopping = True
        await batcher.flush()
        self._arrived.set()
        await settler

    async def _read_loop(self, batcher: Any) -> None:
        # Read a full batch at a time: room for a few entries at a time would mean many reads.
        threshold = max(0, self.max_pending - self.batch)
        while not self._stop.is_set():
            while len(self._window) > threshold and not self._stop.is_set():
                self._space.clear()
                await self._space.wait()
            if self._stop.is_set():
                return
            limit = min(self.batch, self.max_pending - len(self._window))
            entries = await self._reader.read(limit)
            for entry in entries:
                await self._admit(entry, batcher)
            if entries:
                self._arrived.set()

    async def _admit(self, entry: Entry, batcher: Any) -> None:
        self.stats.read += 1
        if entry.deliveries > 1:
            self.stats.reclaimed += 1
        self.stats.held += 1
        record = entry.fields.get("record")
        if entry.deliveries > self.max_deliveries:
            held = _Held(entry, None, None, "poison", _poison(entry.deliveries))
        elif record is None:
            held = _Held(entry, None, None, "invalid", "the entry has no 'record' field")
        else:
            try:
                request = parse_entry(record, entry.id, self._key_attribute)
            except InputError as exc:
                held = _Held(entry, None, None, "invalid", str(exc))
            else:
                delivery = await batcher.submit(
                    request.customer,
                    request.touchpoint,
                    *request.activities,
                    properties=request.properties,
                    device=request.device,
                )
                held = _Held(entry, request, delivery)
        self._window.append(held)

    async def _settle_loop(self) -> None:
        """Settle held entries in the order they were read, acknowledging in batches."""
        while True:
            if not self._window:
                if self._acks:
                    await self._flush_acks()
                    continue
                if self._reader.stopping:
                    break
                self._arrived.clear()
                await self._arrived.wait()
                continue
            head = self._window[0]
            if head.delivery is not None and not head.delivery.done():
                if self._acks:
                    await self._flush_acks()
                with contextlib.suppress(MXOError):
                    await head.delivery
            while self._window and _done(self._window[0]):
                self._settle(self._window.popleft())
                if len(self._acks) >= _ACK_BATCH:
                    await self._flush_acks()
            self._space.set()
        await self._flush_acks()

    def _settle(self, held: _Held) -> None:
        entry = held.entry
        if held.delivery is None:
            self._acks.append((held, held.reason, held.error))
            return
        error = held.delivery.exception()
        request = held.request
        assert request is not None
        if error is None:
            self._acks.append((held, "", ""))
            return
        if is_fatal(error):
            self._fatal = error
            self._give_back(held)
            _log.error("credentials refused: stopping (%s)", describe_error(error))
            self.stop()
            return
        if isinstance(error, RejectedActivitiesError):
            self._acks.append((held, "rejected", _rejections(request, error)))
            return
        message = describe_error(error, request.customer)
        if isinstance(error, AmbiguousDeliveryError) and not self.at_least_once:
            self._acks.append((held, "ambiguous", message))
        elif isinstance(error, ResponseFormatError):
            self._acks.append((held, "unconfirmed", message))
        elif isinstance(
            error, AmbiguousDeliveryError | ServerError | RateLimitedError | TransportError
        ):
            if entry.deliveries >= self.max_deliveries:
                self._acks.append((held, "poison", f"{_poison(entry.deliveries)}; last: {message}"))
            else:
                self._give_back(held)
        else:
            self._acks.append((held, "failed", message))

    def _give_back(self, held: _Held) -> None:
        """Leave the entry pending and stop heartbeating it: it is reclaimed after
        ``claim_after`` (by any worker) for another try."""
        self._reader.held.discard(held.entry.id)
        self.stats.retried += 1
        self.stats.held -= 1

    async def _flush_acks(self) -> None:
        acks, self._acks = self._acks, []
        if not acks:
            return
        plain = [held.entry.id for held, reason, _ in acks if not reason]
        args: list[str] = [self.group, str(len(plain)), *plain]
        for held, reason, error in acks:
            if reason:
                args += [held.entry.id, reason, held.entry.fields.get("record", ""), error]
        keys = [self.stream.name, self.stream.dead]

        async def settle() -> Any:
            return await self._script(keys=keys, args=args)

        await self._reader.call("settle", settle)
        for held, reason, _ in acks:
            self._reader.held.discard(held.entry.id)
            self.stats.held -= 1
            if reason:
                self.stats.dead_lettered[reason] += 1
            else:
                self.stats.acked += 1
                self.stats.activities += len(held.request.activities) if held.request else 0

    async def _watch_lag(self) -> None:
        """Forever: the group's lag (entries not yet delivered), for the status line."""
        while True:
            with contextlib.suppress(Exception):
                for group in await self.stream.redis.xinfo_groups(self.stream.name):
                    name = group.get("name")
                    if (name.decode() if isinstance(name, bytes) else name) == self.group:
                        lag = group.get("lag")
                        self.stats.lag = None if lag is None else int(lag)
            await asyncio.sleep(1.0)


def _done(held: _Held) -> bool:
    return held.delivery is None or held.delivery.done()


def _poison(deliveries: int) -> str:
    return f"delivered {deliveries} times without settling"


def _rejections(request: ActivityRequest, error: RejectedActivitiesError) -> str:
    rejections = match_rejections(request.activities, error.rejected)
    parts = [
        f"activity {index}: {rejection.code}: {describe_rejection(rejection, request.customer)}"
        for index, rejection in sorted(rejections.items())
    ]
    return "; ".join(parts) or "rejected by MXO"
