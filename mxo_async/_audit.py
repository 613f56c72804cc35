"""Audit views of an erasure journal: a summary of final outcomes and a JSON/CSV export."""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import IO, Any, Literal, NamedTuple

import attrs
import orjson

from ._journal import _OUTCOMES, ERASED, FAILED, NOT_FOUND, TARGET_FIELDS, _Key, _Record, _scan

__all__ = ["JournalSummary", "export_journal", "summarize_journal"]


@attrs.frozen
class JournalSummary:
    """What a journal holds, counted per customer by its final outcome.

    ``lines`` counts valid lines, ``customers`` distinct customers; ``first_time`` and
    ``last_time`` span all lines; ``torn_tail`` says a torn last line was ignored; ``target`` is
    the tenant of the journal's last line that names one (None when no line does: a journal
    written before targets were recorded, or by sweeps given no target).
    """

    lines: int
    customers: int
    erased: int
    not_found: int
    failed: int
    first_time: datetime | None
    last_time: datetime | None
    torn_tail: bool
    target: Mapping[str, str] | None = attrs.field(default=None, hash=False)


class _Final(NamedTuple):
    records: dict[_Key, _Record]  # each customer's last record, in order of last appearance
    lines: int
    torn_tail: bool
    first_time: datetime | None
    last_time: datetime | None
    target: dict[str, str] | None


def _final_records(path: str | os.PathLike[str]) -> _Final:
    final: dict[_Key, _Record] = {}
    lines = valid_end = 0
    first: datetime | None = None
    last: datetime | None = None
    target: dict[str, str] | None = None
    with open(path, "rb") as file:
        for entry in _scan(file):
            valid_end = entry.end
            record = entry.record
            target = record.get("target") or target  # a sweep refuses a journal of another one
            lines += 1
            final.pop(entry.key, None)
            final[entry.key] = record
            moment = datetime.fromisoformat(record["time"])
            first = moment if first is None or moment < first else first
            last = moment if last is None or moment > last else last
        size = file.seek(0, os.SEEK_END)
    return _Final(final, lines, valid_end < size, first, last, target)


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
        final.target,
    )


# The first eight columns are those of journals before identifiers and targets; new ones follow.
_CSV_FIELDS = ("customer_tid", "customer_key", "outcome", "tids", "identifiers", "attempts",
               "error", "time", "customer_identifiers", "request", *TARGET_FIELDS)  # fmt: skip


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

    A path is created (or truncated) with mode 0600: the export holds the journal's customer
    identifiers.

    ``json`` writes a JSON array of journal records, one per line, in the current shape: lines of
    older journals get an empty ``customer.identifiers`` and a null ``request`` and ``target``.
    ``csv`` writes the columns ``customer_tid, customer_key, outcome, tids, identifiers,
    attempts, error, time, customer_identifiers, request, base_url, site_key,
    customer_key_attribute, api_version``: lists are joined by ``;``, identifiers written as
    ``apiName:value``, the request as ``tid:<TID>`` or ``apiName:value``; the last four are the
    line's target (empty when it has none).
    """
    return export_records(_final_records(path).records.values(), out, format)


def export_records(
    records: Iterable[_Record],
    out: str | os.PathLike[str] | IO[str],
    format: Literal["json", "csv"] = "json",
) -> int:
    """Write journal records (one per customer) as :func:`export_journal` does; return how many.

    The export of a sweep kept elsewhere (``mxo_async.redis.ErasureSweep``) uses it, so every
    audit export has this one format.
    """
    if format not in ("json", "csv"):
        raise ValueError(f"format must be 'json' or 'csv', got {format!r}")
    rows = [_normalized(record) for record in records]
    if isinstance(out, (str, os.PathLike)):
        with _private(out) as stream:
            _export(rows, stream, format)
    else:
        _export(rows, out, format)
    return len(rows)


def _private(path: str | os.PathLike[str]) -> IO[str]:
    """``path`` opened for writing (truncated), readable by its owner only, like the journal."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        # An existing file keeps its mode through O_CREAT: narrow it (best effort: another
        # owner's file cannot be changed, but then it is not ours to protect).
        fchmod = getattr(os, "fchmod", None)  # not on Windows
        if fchmod is not None:
            with contextlib.suppress(OSError):
                fchmod(fd, 0o600)
        return open(fd, "w", encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        raise


def _normalized(record: _Record) -> _Record:
    """A record in the current shape, whatever journal version wrote it."""
    customer = record["customer"]
    return {
        "customer": {
            "tid": customer.get("tid"),
            "key": customer.get("key"),
            "identifiers": customer.get("identifiers") or {},
        },
        "request": record.get("request"),
        **{k: v for k, v in record.items() if k not in ("customer", "request", "target")},
        "target": record.get("target"),
    }


def _pairs(identifiers: Iterable[Mapping[str, str]]) -> str:
    return ";".join(f"{i['apiName']}:{i['value']}" for i in identifiers)


def _request_cell(request: Mapping[str, Any] | None) -> str | None:
    if request is None:
        return None
    if "tid" in request:
        return f"tid:{request['tid']}"
    return _pairs([request["identifier"]])


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
        customer, target = record["customer"], record["target"] or {}
        identifiers = [{"apiName": n, "value": v} for n, v in customer["identifiers"].items()]
        row = (customer["tid"], customer["key"], record["outcome"], ";".join(record["tids"]),
               _pairs(record["identifiers"]), record["attempts"], record["error"],
               record["time"], _pairs(identifiers), _request_cell(record["request"]),
               *(target.get(field) for field in TARGET_FIELDS))  # fmt: skip
        writer.writerow([_cell(value) for value in row])
