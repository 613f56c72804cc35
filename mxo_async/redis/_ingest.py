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

Acknowledgements go in batches (up to 1,000 entries, or 0.1 s after the first of them settled,
or when nothing else is ready): one ``XACK`` for the delivered, the Lua script only for a batch
holding dead letters. An entry is never acknowledged before its activities settled; a worker
killed meanwhile leaves the batch pending, to be reclaimed (duplicates: at most what it held).

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
from .._verdicts import describe_error, describe_rejection, is_fatal
from .._wire import match_rejections
from . import _stream_scripts
from ._group import AnyRedis, Entry, GroupConsumer, default_consumer
from ._records import InputError, check_record, encode_record, parse_entry

__all__ = ["ActivityStream", "IngestWorker", "WorkerStats"]

_log = logging.getLogger("mxo_async.redis")
# Settled entries are acknowledged together: up to this many in one round trip...
_ACK_BATCH = 1_000
# ... and at most this many seconds after the first of them settled.
_ACK_DELAY = 0.1


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


class _Held:
    """An entry read and not yet acknowledged, with the delivery of its activities."""

    __slots__ = ("activities", "delivery", "entry", "error", "reason", "request")

    def __init__(
        self, entry: Entry, request: ActivityRequest | None, reason: str = "", error: str = ""
    ) -> None:
        self.entry = entry
        self.request = request
        self.delivery: Delivery | None = None  # set once the request is submitted
        self.activities = 0 if request is None else len(request.activities)
        self.reason = reason  # set when the entry is dead-lettered
        self.error = error


class WorkerStopped(Exception):
    """The worker stopped on an error every further entry would hit too (credentials, ...)."""


class IngestWorker:
    """One consumer of a group on an :class:`ActivityStream`; see the module docstring.

    Args:
        stream: the stream.
        group: the consumer group (created at the stream's start if missing).
        consumer: this worker's name in the group; default ``host-pid``. A restarted worker
            given the same name gets its own pending entries back at once.
        batch: entries read per call at most (a quarter of ``max_pending`` at most, so that
            reading goes on while earlier entries settle).
        max_pending: entries held at most (read, not acknowledged): the worker's memory bound.
        claim_after: seconds an entry may stay unacknowledged by a consumer before another
            reclaims it (the time a dead worker's entries wait).
        max_deliveries: an entry delivered more often than this is dead-lettered as ``poison``.
        at_least_once: ambiguous entries are retried rather than dead-lettered; give the client
            ``RetryPolicy(retry_ambiguous=True)`` as well.
        block: seconds one read waits for new entries.
        max_activities, max_latency: the batcher's (activities per request, seconds an
            activity may wait for others of its context).
        concurrency: requests in flight at most (the batcher's ``max_concurrent_requests``;
            the client's ``Limits.max_connections`` should allow as many). The requests beyond
            it wait in the batcher, where they cost nothing, rather than in the client's throttle.
    """

    def __init__(
        self,
        stream: ActivityStream,
        group: str,
        consumer: str | None = None,
        *,
        batch: int = 1_000,
        max_pending: int = 5_000,
        claim_after: float = 60.0,
        max_deliveries: int = 5,
        at_least_once: bool = False,
        block: float = 1.0,
        max_activities: int = 100,
        max_latency: float = 0.1,
        concurrency: int = 64,
    ) -> None:
        if batch < 1 or max_pending < 1 or max_deliveries < 1 or concurrency < 1:
            raise ValueError("batch, max_pending, max_deliveries and concurrency must be >= 1")
        self.stream = stream
        self.group = group
        self.consumer = consumer or default_consumer()
        self.batch = max(1, min(batch, max_pending // 4))
        self.max_pending = max_pending
        self.max_deliveries = max_deliveries
        self.at_least_once = at_least_once
        self.max_activities = max_activities
        self.max_latency = max_latency
        self.concurrency = concurrency
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
        self._acks: list[_Held] = []
        self._ack_due = 0.0
        # A quarter of the bound at most: the reader keeps room to read while acks wait.
        self._ack_batch = max(1, min(_ACK_BATCH, max_pending // 4))
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
            max_concurrent_requests=self.concurrency,
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
        # Held entries (read, not acknowledged: in the window or waiting for their ACK) are the
        # memory bound.
        stats = self.stats
        threshold = max(0, self.max_pending - self.batch)
        while not self._stop.is_set():
            while stats.held > threshold and not self._stop.is_set():
                self._space.clear()
                await self._space.wait()
            if self._stop.is_set():
                return
            limit = min(self.batch, self.max_pending - stats.held)
            entries = await self._reader.read(limit)
            window = self._window
            for entry in entries:
                held = self._admit(entry)
                request = held.request
                if request is not None:
                    held.delivery = await batcher.submit(
                        request.customer,
                        request.touchpoint,
                        *request.activities,
                        properties=request.properties,
                        device=request.device,
                    )
                window.append(held)
            if entries:
                self._arrived.set()

    def _admit(self, entry: Entry) -> _Held:
        """An entry read: its request to submit, or the reason it is dead-lettered at once."""
        stats = self.stats
        stats.read += 1
        stats.held += 1
        deliveries = entry.deliveries
        if deliveries > 1:
            stats.reclaimed += 1
        record = entry.fields.get("record")
        if deliveries > self.max_deliveries:
            return _Held(entry, None, "poison", _poison(deliveries))
        if record is None:
            return _Held(entry, None, "invalid", "the entry has no 'record' field")
        try:
            return _Held(entry, parse_entry(record, entry.id, self._key_attribute))
        except InputError as exc:
            return _Held(entry, None, "invalid", str(exc))

    async def _settle_loop(self) -> None:
        """Settle held entries in the order they were read; acknowledge them in batches.

        Why batches: one round trip per entry (or per few) costs the worker and redis-server
        more CPU than the entries' own work. A batch goes when it is full, when nothing else is
        ready to settle, or ``_ACK_DELAY`` after its first entry settled, whichever comes first:
        an entry is never acknowledged before it settled, and never long after.
        """
        window = self._window
        loop = asyncio.get_running_loop()
        while True:
            if not window:
                if self._acks:
                    await self._flush_acks()
                    continue
                if self._reader.stopping:
                    break
                self._arrived.clear()
                await self._arrived.wait()
                continue
            delivery = window[0].delivery
            if delivery is not None and not delivery.done():
                if not self._acks:
                    with contextlib.suppress(MXOError):
                        await delivery
                elif loop.time() >= self._ack_due:
                    await self._flush_acks()
                    continue
                else:
                    with contextlib.suppress(MXOError, TimeoutError):
                        async with asyncio.timeout_at(self._ack_due):
                            await delivery
                    continue
            acks = self._acks
            if not acks:
                self._ack_due = loop.time() + _ACK_DELAY
            while window:
                held = window[0]
                delivery = held.delivery
                if delivery is not None and not delivery.done():
                    break
                window.popleft()
                if delivery is None or (error := delivery.exception()) is None:
                    acks.append(held)
                else:
                    self._settle_failure(held, error)
            if len(acks) >= self._ack_batch:
                await self._flush_acks()
        await self._flush_acks()

    def _settle_failure(self, held: _Held, error: MXOError) -> None:
        """A settled delivery that failed: dead-letter it, give it back, or stop the worker."""
        entry = held.entry
        request = held.request
        assert request is not None
        if is_fatal(error):
            self._fatal = error
            self._give_back(held)
            _log.error("credentials refused: stopping (%s)", describe_error(error))
            self.stop()
            return
        if isinstance(error, RejectedActivitiesError):
            self._dead(held, "rejected", _rejections(request, error))
            return
        message = describe_error(error, request.customer)
        if isinstance(error, AmbiguousDeliveryError) and not self.at_least_once:
            self._dead(held, "ambiguous", message)
        elif isinstance(error, ResponseFormatError):
            self._dead(held, "unconfirmed", message)
        elif isinstance(
            error, AmbiguousDeliveryError | ServerError | RateLimitedError | TransportError
        ):
            if entry.deliveries >= self.max_deliveries:
                self._dead(held, "poison", f"{_poison(entry.deliveries)}; last: {message}")
            else:
                self._give_back(held)
        else:
            self._dead(held, "failed", message)

    def _dead(self, held: _Held, reason: str, error: str) -> None:
        held.reason = reason
        held.error = error
        self._acks.append(held)

    def _give_back(self, held: _Held) -> None:
        """Leave the entry pending and stop heartbeating it: it is reclaimed after
        ``claim_after`` (by any worker) for another try."""
        self._reader.held.discard(held.entry.id)
        self.stats.retried += 1
        self.stats.held -= 1
        self._space.set()

    async def _flush_acks(self) -> None:
        acks, self._acks = self._acks, []
        if not acks:
            return
        ids = [held.entry.id for held in acks if not held.reason]
        dead = [held for held in acks if held.reason]
        redis, name, group = self.stream.redis, self.stream.name, self.group
        if dead:
            # Dead letters and their ACKs in one script: an entry is never acknowledged without
            # its dead letter, nor dead-lettered twice.
            args: list[str] = [group, str(len(ids)), *ids]
            for held in dead:
                args += [
                    held.entry.id,
                    held.reason,
                    held.entry.fields.get("record", ""),
                    held.error,
                ]
            keys = [name, self.stream.dead]

            async def settle() -> Any:
                return await self._script(keys=keys, args=args)

            await self._reader.call("settle", settle)
        else:

            async def acknowledge() -> Any:
                return await redis.xack(name, group, *ids)

            await self._reader.call("XACK", acknowledge)
        stats = self.stats
        self._reader.held.difference_update(held.entry.id for held in acks)
        stats.held -= len(acks)
        stats.acked += len(ids)
        stats.activities += sum(held.activities for held in acks if not held.reason)
        for held in dead:
            stats.dead_lettered[held.reason] += 1
        self._space.set()

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


def _poison(deliveries: int) -> str:
    return f"delivered {deliveries} times without settling"


def _rejections(request: ActivityRequest, error: RejectedActivitiesError) -> str:
    rejections = match_rejections(request.activities, error.rejected)
    parts = [
        f"activity {index}: {rejection.code}: {describe_rejection(rejection, request.customer)}"
        for index, rejection in sorted(rejections.items())
    ]
    return "; ".join(parts) or "rejected by MXO"
