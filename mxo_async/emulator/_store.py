"""The emulator's in-memory customer store: records keyed by TID with a customer-key index.

Identity rules (kept deliberately simple, and the same for every endpoint):

- a customer key alone finds its record, or creates one with a fresh TID;
- a TID alone finds its record, or creates one with exactly that TID and no key;
- a key and a TID together: the key wins. A known key's record gains the TID if no other record holds
  it; an unknown key is attached to the TID's record if that record has no key yet, else it gets a
  new record with a fresh TID. Records are never merged.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from datetime import datetime

import attrs

from ._requests import format_timestamp, parse_timestamp

__all__ = ["Record", "Store", "StoredCustomer"]


@attrs.define(eq=False)
class Record:
    """One customer: its TIDs (first is primary), optional key, seeded attributes and activities."""

    tids: list[str]
    key: str | None = None
    attributes: dict[str, object] = attrs.Factory(dict)
    counts: dict[str, dict[str, int]] = attrs.Factory(dict)  # proposition -> activity type -> n
    total: int = 0
    last_activity: datetime | None = None
    activity_seqs: list[int] = attrs.Factory(list)


@attrs.frozen
class StoredCustomer:
    """A read-only snapshot of a stored customer, for test assertions."""

    tids: tuple[str, ...]
    key: str | None
    attributes: dict[str, object]
    activities: tuple[dict[str, str | None], ...]


class Store:
    """Customers and the log of applied activities, in apply order."""

    def __init__(
        self, seed: int, now: Callable[[], datetime], *, keep_activities: bool = True
    ) -> None:
        self._rng = random.Random(f"{seed}:tids")  # noqa: S311 - reproducible TIDs, not secrets
        self._now = now
        self._keep = keep_activities
        self._by_tid: dict[str, Record] = {}
        self._by_key: dict[str, Record] = {}
        self._log: dict[int, dict[str, str | None]] = {}
        self._seq = 0

    def new_tid(self) -> str:
        """Return an unused lower-case 8-4-4-4-12 hex TID from the seeded generator."""
        while True:
            h = f"{self._rng.getrandbits(128):032x}"
            tid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
            if tid not in self._by_tid:
                return tid

    def find(self, key: str | None, tid: str | None) -> Record | None:
        """Return the record a key (preferred) or TID names, without creating anything."""
        if key is not None:
            return self._by_key.get(key)
        if tid is not None:
            return self._by_tid.get(tid)
        return None

    def resolve(self, key: str | None, tid: str | None) -> tuple[Record, str]:
        """Return the record for these identifiers (creating or linking as the rules say) and its TID.

        The TID returned is the one given when it belongs to the record, else the record's primary.
        """
        by_key = self._by_key.get(key) if key is not None else None
        by_tid = self._by_tid.get(tid) if tid is not None else None
        if by_key is not None:
            record = by_key
            if tid is not None and by_tid is None:
                self._link(record, tid)
        elif key is not None and by_tid is not None and by_tid.key is None:
            record = by_tid
            record.key = key
            self._by_key[key] = record
        elif key is None and by_tid is not None:
            record = by_tid
        else:
            record = Record(tids=[])
            self._link(record, tid if tid is not None and by_tid is None else self.new_tid())
            if key is not None:
                record.key = key
                self._by_key[key] = record
        chosen = tid if tid is not None and tid in record.tids else record.tids[0]
        return record, chosen

    def _link(self, record: Record, tid: str) -> None:
        record.tids.append(tid)
        self._by_tid[tid] = record

    def apply(
        self, record: Record, tid: str, touchpoint: str, activities: Iterable[dict[str, str]]
    ) -> int:
        """Store activities for ``record``; a missing timestamp becomes the server's time.

        Returns the number of activities stored.
        """
        applied = 0
        server_time: str | None = None
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
                entry.update(
                    timestamp=stamp, tid=tid, customerKey=record.key, touchpoint=touchpoint
                )
                self._log[self._seq] = entry
                record.activity_seqs.append(self._seq)
        return applied

    def delete(self, record: Record) -> None:
        """Remove a record, its TIDs, its key and its activities."""
        for tid in record.tids:
            self._by_tid.pop(tid, None)
        if record.key is not None:
            self._by_key.pop(record.key, None)
        for seq in record.activity_seqs:
            self._log.pop(seq, None)
        record.activity_seqs.clear()

    def activities(
        self, *, tid: str | None = None, key: str | None = None
    ) -> list[dict[str, str | None]]:
        """Return copies of stored activities in apply order, optionally for one customer."""
        if tid is None and key is None:
            return [dict(entry) for entry in self._log.values()]
        record = self.find(key, tid)
        if record is None:
            return []
        return [dict(self._log[seq]) for seq in record.activity_seqs]

    def snapshot(self, record: Record) -> StoredCustomer:
        """Return a read-only copy of ``record``."""
        return StoredCustomer(
            tids=tuple(record.tids),
            key=record.key,
            attributes=dict(record.attributes),
            activities=tuple(dict(self._log[seq]) for seq in record.activity_seqs),
        )

    def __len__(self) -> int:
        return len({id(record) for record in self._by_tid.values()})
