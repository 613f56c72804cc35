"""Audit views of an erasure journal: a summary of final outcomes and a JSON/CSV export."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from datetime import datetime
from typing import IO, Literal, NamedTuple

import attrs
import orjson

from ._journal import _OUTCOMES, ERASED, FAILED, NOT_FOUND, _Key, _Record, _scan

__all__ = ["JournalSummary", "export_journal", "summarize_journal"]


@attrs.frozen
class JournalSummary:
    """What a journal holds, counted per customer by its final outcome.

    ``lines`` counts valid lines, ``customers`` distinct customers; ``first_time`` and
    ``last_time`` span all lines; ``torn_tail`` says a torn last line was ignored.
    """

    lines: int
    customers: int
    erased: int
    not_found: int
    failed: int
    first_time: datetime | None
    last_time: datetime | None
    torn_tail: bool


class _Final(NamedTuple):
    records: dict[_Key, _Record]  # each customer's last record, in order of last appearance
    lines: int
    torn_tail: bool
    first_time: datetime | None
    last_time: datetime | None


def _final_records(path: str | os.PathLike[str]) -> _Final:
    final: dict[_Key, _Record] = {}
    lines = valid_end = 0
    first: datetime | None = None
    last: datetime | None = None
    with open(path, "rb") as file:
        for record, key, _outcome, end in _scan(file):
            lines += 1
            valid_end = end
            final.pop(key, None)
            final[key] = record
            moment = datetime.fromisoformat(record["time"])
            first = moment if first is None or moment < first else first
            last = moment if last is None or moment > last else last
        size = file.seek(0, os.SEEK_END)
    return _Final(final, lines, valid_end < size, first, last)


def summarize_journal(path: str | os.PathLike[str]) -> JournalSummary:
    """Count a journal's customers by final outcome; times span all its lines.

    A torn last line is ignored (and reported as ``torn_tail``); the file is not modified.
    """
    final = _final_records(path)
    counts = dict.fromkeys(_OUTCOMES, 0)
    for record in final.records.values():
        counts[record["outcome"]] += 1
    return JournalSummary(
        final.lines,
        len(final.records),
        counts[ERASED],
        counts[NOT_FOUND],
        counts[FAILED],
        final.first_time,
        final.last_time,
        final.torn_tail,
    )


_CSV_FIELDS = ("customer_tid", "customer_key", "outcome", "tids", "identifiers", "attempts",
               "error", "time")  # fmt: skip


def _cell(value: object) -> str:
    """A CSV cell safe to open in a spreadsheet: formula-like text gets a leading quote."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_journal(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | IO[str],
    format: Literal["json", "csv"] = "json",
) -> int:
    """Write one row per customer (its final state) for auditors; return the number of rows.

    ``json`` writes a JSON array of journal records, one per line; ``csv`` writes the columns
    ``customer_tid, customer_key, outcome, tids, identifiers, attempts, error, time`` with lists
    joined by ``;`` and identifiers as ``apiName:value``.
    """
    if format not in ("json", "csv"):
        raise ValueError(f"format must be 'json' or 'csv', got {format!r}")
    records = _final_records(path).records
    if isinstance(out, (str, os.PathLike)):
        with open(out, "w", encoding="utf-8", newline="") as stream:
            _export(records.values(), stream, format)
    else:
        _export(records.values(), out, format)
    return len(records)


def _export(records: Iterable[_Record], stream: IO[str], format: str) -> None:
    if format == "json":
        stream.write("[")
        for n, record in enumerate(records):
            stream.write(",\n" if n else "\n")
            stream.write(orjson.dumps(record).decode())
        stream.write("\n]\n")
        return
    writer = csv.writer(stream)
    writer.writerow(_CSV_FIELDS)
    for record in records:
        customer = record["customer"]
        row = (customer["tid"], customer["key"], record["outcome"], ";".join(record["tids"]),
               ";".join(f"{i['apiName']}:{i['value']}" for i in record["identifiers"]),
               record["attempts"], record["error"], record["time"])  # fmt: skip
        writer.writerow([_cell(value) for value in row])
