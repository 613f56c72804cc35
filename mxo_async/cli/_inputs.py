"""Turn input lines into requests: the documented NDJSON and CSV field mappings.

Activities (``send``), NDJSON, one object per line, either one activity::

    {"customer_key": "alice@example.com", "tid": "...", "touchpoint": "web://bank.com",
     "proposition": "mortgage", "activity_type": "view", "dynamic_proposition": "fixed-5y",
     "timestamp": "2024-05-01T12:00:00Z", "properties": {"campaign": "summer"}}

or several activities of one customer context: the same keys, with ``"activities": [{"proposition":
..., "activity_type": ..., "dynamic_proposition": ..., "timestamp": ...}, ...]`` instead of the
activity keys. ``customer_key`` and/or ``tid`` is required; ``touchpoint`` falls back to
``--touchpoint``; ``timestamp`` is RFC 3339 with a zone (omitted: MXO uses the time it receives it).
Unknown keys are errors (a misspelt key would otherwise be dropped silently).

Activities, CSV: a header line, then one activity per row. Columns ``customer_key``, ``tid``,
``touchpoint``, ``proposition``, ``activity_type``, ``dynamic_proposition``, ``timestamp`` and
``prop.<name>`` for context properties; empty cells are absent values. One record per line: a
quoted field may hold commas and quotes but not line breaks.

Customers (``erase``): NDJSON ``{"customer_key": ..., "tid": ...}``; CSV with ``customer_key`` and/or
``tid`` columns; or plain text, one customer key per line (``tid:<TID>`` for a TID). Blank lines,
and in plain text lines starting with ``#``, are skipped.
"""

from __future__ import annotations

import csv
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from datetime import datetime
from typing import Literal, TypeVar

import orjson

from mxo_async import Activity, ActivityRequest, Customer, ValidationError

from ._lines import Line

__all__ = [
    "ACTIVITY_FORMATS",
    "CUSTOMER_FORMATS",
    "CsvActivities",
    "CsvCustomers",
    "InputError",
    "detect_format",
    "first_line",
    "parse_activity_json",
    "parse_customer_json",
    "parse_customer_text",
    "parse_lines",
]

T = TypeVar("T")

ActivityFormat = Literal["ndjson", "csv"]
ACTIVITY_FORMATS = ("ndjson", "csv")
CUSTOMER_FORMATS = ("ndjson", "csv", "text")

_EXTENSIONS = {
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "ndjson",
    ".csv": "csv",
    ".txt": "text",
}
_CONTEXT_KEYS = frozenset({"customer_key", "tid", "touchpoint", "properties"})
_ACTIVITY_KEYS = frozenset({"proposition", "activity_type", "dynamic_proposition", "timestamp"})
_CSV_COLUMNS = frozenset(_CONTEXT_KEYS - {"properties"} | _ACTIVITY_KEYS)
_PROPERTY_PREFIX = "prop."


class InputError(ValueError):
    """One input line cannot be used; the message says why (and never echoes the line)."""


def detect_format(path: str, explicit: str | None, allowed: tuple[str, ...], stdin: str) -> str:
    """The input format: ``explicit`` if given, else from the extension, else ``stdin`` for ``-``.

    Raises:
        InputError: the extension does not say, or names a format this command cannot read.
    """
    if explicit is not None:
        return explicit
    if path == "-":
        return stdin
    extension = os.path.splitext(path)[1].lower()
    found = _EXTENSIONS.get(extension)
    if found is None or found not in allowed:
        raise InputError(
            f"cannot tell the format of {path!r} from its extension; "
            f"pass --format ({'|'.join(allowed)})"
        )
    return found


async def parse_lines(
    lines: AsyncGenerator[Line, None],
    parse: Callable[[str], T | None],
    on_invalid: Callable[[Line, str], None],
    on_skipped: Callable[[Line], None],
) -> AsyncGenerator[tuple[Line, T], None]:
    """Yield ``(line, parse(line.text))`` for each usable line.

    A line that is not valid UTF-8 (or too long), or that ``parse`` rejects with
    :class:`InputError`, goes to ``on_invalid`` with the reason; a blank line, or one ``parse``
    maps to None (a comment), goes to ``on_skipped``.
    """
    async with aclosing(lines):
        async for line in lines:
            if line.error is not None:
                on_invalid(line, line.error)
                continue
            if not line.text.strip():
                on_skipped(line)
                continue
            try:
                value = parse(line.text)
            except InputError as exc:
                on_invalid(line, str(exc))
                continue
            if value is None:
                on_skipped(line)
                continue
            yield line, value


async def first_line(lines: AsyncIterator[Line]) -> Line | None:
    """The first non-blank line (a CSV header), or None when there is none."""
    async for line in lines:
        if line.error is None and line.text.strip():
            return line
    return None


# -- activities -----------------------------------------------------------------------------------


def _optional_text(record: Mapping[str, object], key: str) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(f"{key}: must be a string, got {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    return {
        dict: "an object",
        list: "an array",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
    }.get(type(value), type(value).__name__)


def _timestamp(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"timestamp: not an RFC 3339 date-time: {text!r}") from None
    if moment.tzinfo is None:
        raise InputError(f"timestamp: needs a time zone such as 'Z' or '+02:00': {text!r}")
    return moment


def _customer(record: Mapping[str, object]) -> Customer:
    key = _optional_text(record, "customer_key")
    tid = _optional_text(record, "tid")
    if key is None and tid is None:
        raise InputError("customer_key or tid is required")
    return Customer(tid=tid, key=key)


def _activity(record: Mapping[str, object], where: str = "") -> Activity:
    proposition = _optional_text(record, "proposition")
    activity_type = _optional_text(record, "activity_type")
    if proposition is None or activity_type is None:
        missing = "proposition" if proposition is None else "activity_type"
        raise InputError(f"{where}{missing} is required")
    return Activity(
        proposition,
        activity_type,
        _optional_text(record, "dynamic_proposition"),
        _timestamp(_optional_text(record, "timestamp")),
    )


def _touchpoint(record: Mapping[str, object], default: str | None) -> str:
    touchpoint = _optional_text(record, "touchpoint") or default
    if touchpoint is None:
        raise InputError("touchpoint is required (in the line or with --touchpoint)")
    return touchpoint


def _properties(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"properties: must be an object, got {_json_type(value)}")
    for name, item in value.items():
        if not isinstance(item, str):
            raise InputError(f"properties.{name}: must be a string, got {_json_type(item)}")
    return value


def parse_activity_json(text: str, default_touchpoint: str | None) -> ActivityRequest:
    """One NDJSON line as an :class:`ActivityRequest` (see the module docstring).

    Raises:
        InputError: the line does not follow the mapping or fails the model's validation.
    """
    record = _json_object(text)
    try:
        if "activities" in record:
            unknown = set(record) - _CONTEXT_KEYS - {"activities"}
            items = record["activities"]
            if not isinstance(items, list) or not items:
                raise InputError("activities: must be a non-empty array of objects")
            activities = [_activity_item(item, n) for n, item in enumerate(items)]
        else:
            unknown = set(record) - _CONTEXT_KEYS - _ACTIVITY_KEYS
            activities = [_activity(record)]
        if unknown:
            raise InputError(f"unknown field(s): {', '.join(sorted(unknown))}")
        return ActivityRequest(
            _customer(record),
            _touchpoint(record, default_touchpoint),
            activities,
            _properties(record.get("properties")),
        )
    except ValidationError as exc:
        raise InputError(str(exc)) from None


def _activity_item(item: object, index: int) -> Activity:
    where = f"activities[{index}]."
    if not isinstance(item, dict):
        raise InputError(f"activities[{index}]: must be an object, got {_json_type(item)}")
    unknown = set(item) - _ACTIVITY_KEYS
    if unknown:
        raise InputError(f"{where}unknown field(s): {', '.join(sorted(unknown))}")
    return _activity(item, where)


def _json_object(text: str) -> dict[str, object]:
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise InputError(f"expected a JSON object, got {_json_type(record)}")
    return record


def _csv_row(text: str) -> list[str]:
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise InputError(f"invalid CSV: {exc}") from None
    return rows[0] if rows else []


class CsvActivities:
    """Parses CSV rows against the header line given to the constructor (one activity per row).

    Raises:
        InputError: (constructor) the header has unknown or duplicate columns, or lacks a
            required one; this makes the whole file unusable.
    """

    def __init__(self, header: str, default_touchpoint: str | None) -> None:
        self.columns = [name.strip() for name in _csv_row(header)]
        unknown = [
            c
            for c in self.columns
            if c not in _CSV_COLUMNS and not (c.startswith(_PROPERTY_PREFIX) and len(c) > 5)
        ]
        if unknown:
            raise InputError(f"unknown CSV column(s): {', '.join(unknown)}")
        if len(set(self.columns)) != len(self.columns):
            raise InputError("duplicate CSV columns in the header")
        for required in ("proposition", "activity_type"):
            if required not in self.columns:
                raise InputError(f"the CSV header needs a {required!r} column")
        if "customer_key" not in self.columns and "tid" not in self.columns:
            raise InputError("the CSV header needs a 'customer_key' or 'tid' column")
        if "touchpoint" not in self.columns and default_touchpoint is None:
            raise InputError("the CSV header has no 'touchpoint' column: pass --touchpoint")
        self._default_touchpoint = default_touchpoint

    def parse(self, text: str) -> ActivityRequest:
        """One CSV row as a one-activity :class:`ActivityRequest`."""
        cells = _csv_row(text)
        if len(cells) != len(self.columns):
            raise InputError(f"expected {len(self.columns)} cells, got {len(cells)}")
        record: dict[str, object] = {}
        properties: dict[str, str] = {}
        for column, cell in zip(self.columns, cells, strict=True):
            if column.startswith(_PROPERTY_PREFIX):
                if cell != "":
                    properties[column[len(_PROPERTY_PREFIX) :]] = cell
            else:
                record[column] = cell
        try:
            return ActivityRequest(
                _customer(record),
                _touchpoint(record, self._default_touchpoint),
                [_activity(record)],
                properties,
            )
        except ValidationError as exc:
            raise InputError(str(exc)) from None


# -- customers ------------------------------------------------------------------------------------


def _checked_customer(record: Mapping[str, object]) -> Customer:
    try:
        return _customer(record)
    except ValidationError as exc:
        raise InputError(str(exc)) from None


def parse_customer_json(text: str) -> Customer:
    """``{"customer_key": ..., "tid": ...}`` as a :class:`Customer`."""
    record = _json_object(text)
    unknown = set(record) - {"customer_key", "tid"}
    if unknown:
        raise InputError(f"unknown field(s): {', '.join(sorted(unknown))}")
    return _checked_customer(record)


def parse_customer_text(text: str) -> Customer | None:
    """A plain-text line: a customer key, ``tid:<TID>``, or None for a blank or ``#`` line."""
    value = text.strip()
    if not value or value.startswith("#"):
        return None
    if value.startswith("tid:"):
        return _checked_customer({"tid": value[4:].strip()})
    return _checked_customer({"customer_key": value})


class CsvCustomers:
    """Parses CSV rows with ``customer_key`` and/or ``tid`` columns (others are ignored)."""

    def __init__(self, header: str) -> None:
        self.columns = [name.strip() for name in _csv_row(header)]
        if "customer_key" not in self.columns and "tid" not in self.columns:
            raise InputError("the CSV header needs a 'customer_key' or 'tid' column")

    def parse(self, text: str) -> Customer:
        """One CSV row as a :class:`Customer`."""
        cells = _csv_row(text)
        if len(cells) != len(self.columns):
            raise InputError(f"expected {len(self.columns)} cells, got {len(cells)}")
        return _checked_customer(dict(zip(self.columns, cells, strict=True)))
