"""The emulator's in-memory customer store: records keyed by TID, indexed by identifier.

A record has one or more TIDs (the first is its primary) and at most one value per identifier
attribute (``apiName``); the index maps each ``(apiName, value)`` to its record. The customer key
is the value of the configured key attribute (``customerkey`` by default).

Identity rules (the same for every endpoint; records are never merged):

- the first identifier of the request that the store knows names the record; if none is known, the
  TID does; if neither is, a new record is created, with the TID given (when no record holds it)
  or a fresh one;
- the request's other identifiers are linked to that record (several identifiers of one request
  belong to one customer), except one already held by another record or one whose attribute the
  record already has with another value;
- a known TID whose record has another value for an identifier's attribute is another customer's:
  the request gets a new record with a fresh TID;
- an unknown TID sent with a known identifier is linked to that identifier's record.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

import attrs

from ._requests import format_timestamp, parse_timestamp

__all__ = ["Record", "Store", "StoredCustomer"]

Pair = tuple[str, str]


@attrs.define(eq=False)
class Record:
    """One customer: TIDs (first is primary), identifiers, seeded attributes and activities."""

    tids: list[str]
    identifiers: dict[str, str] = attrs.Factory(dict)  # apiName -> value
    attributes: dict[str, object] = attrs.Factory(dict)
    counts: dict[str, dict[str, int]] = attrs.Factory(dict)  # proposition -> activity type -> n
    total: int = 0
    last_activity: datetime | None = None
    activity_seqs: list[int] = attrs.Factory(list)


@attrs.frozen
class StoredCustomer:
    """A read-only snapshot of a stored customer, for test assertions.

    ``key`` is the value of the key attribute; ``identifiers`` maps every identifier attribute
    (the key attribute included) to its value.
    """

    tids: tuple[str, ...]
    key: str | None
    attributes: dict[str, object]
    activities: tuple[dict[str, str | None], ...]
    identifiers: Mapping[str, str] = attrs.Factory(dict)


class Store:
    """Customers and the log of stored activities, in store order."""

    def __init__(
        self,
        seed: int,
        now: Callable[[], datetime],
        *,
        keep_activities: bool = True,
        key_attribute: str = "customerkey",
    ) -> None:
        self._rng = random.Random(f"{seed}:tids")  # noqa: S311 - reproducible TIDs, not secrets
        self._now = now
        self._keep = keep_activities
        self.key_attribute = key_attribute
        self._by_tid: dict[str, Record] = {}
        self._by_identifier: dict[Pair, Record] = {}
        self._log: dict[int, dict[str, str | None]] = {}
        self._seq = 0

    def new_tid(self) -> str:
        """Return an unused lower-case 8-4-4-4-12 hex TID from the seeded generator."""
        while True:
            h = f"{self._rng.getrandbits(128):032x}"
            tid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
            if tid not in self._by_tid:
                return tid

    def find(self, tid: str | None, identifiers: Sequence[Pair] = ()) -> Record | None:
        """The record the first known identifier names, else the TID's, without creating anything."""
        index = self._by_identifier
        for pair in identifiers:
            record = index.get(pair)
            if record is not None:
                return record
        return self._by_tid.get(tid) if tid is not None else None

    def find_key(self, key: str) -> Record | None:
        """The record whose key attribute has this value."""
        return self._by_identifier.get((self.key_attribute, key))

    def resolve(self, tid: str | None, identifiers: Sequence[Pair] = ()) -> tuple[Record, str]:
        """The record for these identifiers (creating or linking as the rules say) and its TID.

        The TID returned is the one given when it belongs to the record, else the record's primary.
        """
        index = self._by_identifier
        record = None
        for pair in identifiers:
            record = index.get(pair)
            if record is not None:
                break
        by_tid = self._by_tid.get(tid) if tid is not None else None
        if record is None:
            if by_tid is not None and all(
                by_tid.identifiers.get(name, value) == value for name, value in identifiers
            ):
                record = by_tid
            else:
                record = Record(tids=[])
                self._link_tid(
                    record, tid if tid is not None and by_tid is None else self.new_tid()
                )
        elif tid is not None and by_tid is None:
            self._link_tid(record, tid)
        for pair in identifiers:
            name = pair[0]
            if name not in record.identifiers and pair not in index:
                record.identifiers[name] = pair[1]
                index[pair] = record
        if tid is not None and self._by_tid.get(tid) is record:
            return record, tid
        return record, record.tids[0]

    def _link_tid(self, record: Record, tid: str) -> None:
        record.tids.append(tid)
        self._by_tid[tid] = record

    def key_of(self, record: Record) -> str | None:
        """The record's customer key (its key attribute's value), if it has one."""
        return record.identifiers.get(self.key_attribute)

    def apply(
        self, record: Record, tid: str, touchpoint: str, activities: Iterable[Mapping[str, str]]
    ) -> int:
        """Store activities for ``record``; a missing timestamp becomes the server's time.

        Returns the number of activities stored.
        """
        applied = 0
        server_time: str | None = None
        key = self.key_of(record)
        for activity in activities:
            stamp = activity.get("timestamp")
            if stamp is None:
                if server_time is None:
                    server_time = format_timestamp(self._now())
                stamp = server_time
            moment = parse_timestamp(stamp)
            if record.last_activity is None or moment > record.last_activity:
                record.last_activity = moment
            by_type = record.counts.setdefault(activity["propositionCode"], {})
            kind = activity["activityTypeCode"]
            by_type[kind] = by_type.get(kind, 0) + 1
            record.total += 1
            applied += 1
            if self._keep:
                self._seq += 1
                entry: dict[str, str | None] = dict(activity)
                entry.update(timestamp=stamp, tid=tid, customerKey=key, touchpoint=touchpoint)
                self._log[self._seq] = entry
                record.activity_seqs.append(self._seq)
        return applied

    def delete(self, record: Record) -> None:
        """Remove a record, its TIDs, its identifiers and its activities."""
        for tid in record.tids:
            self._by_tid.pop(tid, None)
        for pair in record.identifiers.items():
            self._by_identifier.pop(pair, None)
        for seq in record.activity_seqs:
            self._log.pop(seq, None)
        record.activity_seqs.clear()

    def activities(
        self, *, tid: str | None = None, key: str | None = None
    ) -> list[dict[str, str | None]]:
        """Return copies of stored activities in store order, optionally for one customer."""
        if tid is None and key is None:
            return [dict(entry) for entry in self._log.values()]
        record = self.find_key(key) if key is not None else self.find(tid)
        if record is None:
            return []
        return [dict(self._log[seq]) for seq in record.activity_seqs]

    def snapshot(self, record: Record) -> StoredCustomer:
        """Return a read-only copy of ``record``."""
        return StoredCustomer(
            tids=tuple(record.tids),
            key=self.key_of(record),
            attributes=dict(record.attributes),
            activities=tuple(dict(self._log[seq]) for seq in record.activity_seqs),
            identifiers=dict(record.identifiers),
        )

    def __len__(self) -> int:
        return len({id(record) for record in self._by_tid.values()})
