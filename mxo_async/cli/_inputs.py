"""Turn input lines into requests: input formats, the CSV field mappings, and line handling.

The NDJSON field mappings of activities and customers, and their parser, are the library's
(:mod:`mxo_async._input_records`: one schema, one parser for these commands and the stream
workers); this module adds the CSV readers built on the same field rules, the formats, and the
checks of an input as a whole.

Activities, CSV: a header line, then one activity per row. Columns ``customer_key``, ``tid``,
``touchpoint``, ``proposition``, ``activity_type``, ``dynamic_proposition``, ``timestamp``,
``prop.<name>`` for context properties, ``id.<apiName>`` for identifiers and ``device.<field>``
(either spelling, as in NDJSON) for the device; empty cells are absent values, and a row whose
device cells are all empty has no device. One record per line: a quoted field may hold commas
and quotes but not line breaks. A row equal to the header is skipped (a dead-letter file rebuilt
with ``jq -r .input`` holds the header of each run).

NDJSON means one JSON object per line: an input that starts with a JSON array or a JSON object
spread over several lines is refused once, before anything is sent (:func:`peek_ndjson`).

Customers (``erase``), CSV: ``customer_key``, ``tid`` and/or ``id.<apiName>`` columns (others are
ignored). Blank lines, and in plain text lines starting with ``#``, are skipped.
"""

from __future__ import annotations

import csv
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Literal, TypeVar

from mxo_async import ActivityRequest, Customer, ValidationError
from mxo_async._input_records import (
    ACTIVITY_KEYS,
    CONTEXT_KEYS,
    DEVICE_ALIASES,
    InputError,
    erasable_customer,
    record_activity,
    record_customer,
    record_device,
    record_touchpoint,
)
from mxo_async._wire import CUSTOMER_KEY_API_NAME

from ._lines import Line

__all__ = [
    "ACTIVITY_FORMATS",
    "CUSTOMER_FORMATS",
    "CsvActivities",
    "CsvCustomers",
    "check_ndjson_start",
    "detect_format",
    "first_line",
    "parse_lines",
    "peek_ndjson",
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
_CSV_COLUMNS = frozenset(CONTEXT_KEYS - {"properties", "identifiers", "device"} | ACTIVITY_KEYS)
_PROPERTY_PREFIX = "prop."
_IDENTIFIER_PREFIX = "id."
_DEVICE_PREFIX = "device."


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


def check_ndjson_start(line: Line) -> None:
    """Refuse, once, an input whose first non-blank line opens a JSON array or a multi-line
    JSON document: the commands read NDJSON, one JSON object per line.

    Raises:
        InputError: the line is ``[...`` or a lone ``{``.
    """
    text = line.text.strip()
    if text.startswith("["):
        raise InputError(
            f"line {line.number} starts a JSON array, but NDJSON is expected (one JSON object "
            "per line); convert the file with: jq -c '.[]' FILE > FILE.ndjson"
        )
    if text == "{":
        raise InputError(
            f"line {line.number} starts a JSON object spread over several lines, but NDJSON is "
            "expected (one JSON object per line); convert it with: jq -c . FILE > FILE.ndjson"
        )


async def peek_ndjson(lines: AsyncIterator[Line]) -> AsyncGenerator[Line, None]:
    """``lines`` unchanged, after :func:`check_ndjson_start` passed on the first non-blank line.

    The check runs before this returns (before any line is sent); the lines it read are yielded
    again first.

    Raises:
        InputError: from :func:`check_ndjson_start`.
    """
    seen: list[Line] = []
    async for line in lines:
        seen.append(line)
        if line.error is None and line.text.strip():
            check_ndjson_start(line)
            break
    return _chain(seen, lines)


async def _chain(first: list[Line], rest: AsyncIterator[Line]) -> AsyncGenerator[Line, None]:
    for line in first:
        yield line
    async for line in rest:
        yield line


async def first_line(lines: AsyncIterator[Line]) -> Line | None:
    """The first non-blank line (a CSV header), or None when there is none."""
    async for line in lines:
        if line.error is None and line.text.strip():
            return line
    return None


def _csv_row(text: str) -> list[str]:
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise InputError(f"invalid CSV: {exc}") from None
    return rows[0] if rows else []


def _suffix(column: str, prefix: str) -> str | None:
    """The name after ``prefix`` (``id.email`` -> ``email``), or None for another column."""
    if not column.startswith(prefix):
        return None
    return column[len(prefix) :]


def _api_name(name: str) -> bool:
    return bool(name) and not any(ch.isspace() for ch in name)


def _header(text: str, read: Callable[[str], bool] = lambda column: True) -> list[str]:
    """The header's column names; a column it reads (``read``) may appear only once."""
    columns = [name.strip() for name in _csv_row(text)]
    used = [c for c in columns if read(c)]
    if len(set(used)) != len(used):
        raise InputError("duplicate CSV columns in the header")
    return columns


def _repeats_header(text: str, header: str, columns: list[str]) -> bool:
    """True for a row that is the header line again (its cells are the column names)."""
    if text == header:
        return True
    first = columns[0] if columns else ""
    if not text.lstrip().startswith(first.strip('"')):  # the cheap test, for every other row
        return False
    try:
        return [cell.strip() for cell in _csv_row(text)] == columns
    except InputError:
        return False


def _is_customer_column(column: str) -> bool:
    return column in ("customer_key", "tid") or column.startswith(_IDENTIFIER_PREFIX)


def _has_customer_column(columns: list[str]) -> bool:
    return any(_is_customer_column(c) for c in columns)


_CUSTOMER_COLUMNS_NEEDED = "the CSV header needs a 'customer_key', 'tid' or 'id.<apiName>' column"


class _CsvRecord:
    """One CSV row split into plain cells, identifiers, properties and device fields."""

    __slots__ = ("device", "identifiers", "plain", "properties")

    def __init__(self, columns: list[str], text: str) -> None:
        cells = _csv_row(text)
        if len(cells) != len(columns):
            raise InputError(f"expected {len(columns)} cells, got {len(cells)}")
        self.plain: dict[str, object] = {}
        self.identifiers: dict[str, str] = {}
        self.properties: dict[str, str] = {}
        self.device: dict[str, object] = {}
        for column, cell in zip(columns, cells, strict=True):
            if (name := _suffix(column, _IDENTIFIER_PREFIX)) is not None:
                if cell != "":
                    self.identifiers[name] = cell
            elif (name := _suffix(column, _PROPERTY_PREFIX)) is not None:
                if cell != "":
                    self.properties[name] = cell
            elif (name := _suffix(column, _DEVICE_PREFIX)) is not None:
                self.device[name] = cell
            else:
                self.plain[column] = cell


class CsvActivities:
    """Parses CSV rows against the header line given to the constructor (one activity per row).

    Raises:
        InputError: (constructor) the header has unknown or duplicate columns, or lacks a
            required one; this makes the whole file unusable.
    """

    def __init__(
        self,
        header: str,
        default_touchpoint: str | None,
        key_attribute: str = CUSTOMER_KEY_API_NAME,
    ) -> None:
        self.columns = _header(header)
        unknown = [c for c in self.columns if not _known_activity_column(c)]
        if unknown:
            raise InputError(f"unknown CSV column(s): {', '.join(unknown)}")
        for required in ("proposition", "activity_type"):
            if required not in self.columns:
                raise InputError(f"the CSV header needs the column {required!r}")
        if not _has_customer_column(self.columns):
            raise InputError(_CUSTOMER_COLUMNS_NEEDED)
        if "touchpoint" not in self.columns and default_touchpoint is None:
            raise InputError("the CSV header has no 'touchpoint' column: pass --touchpoint")
        self._default_touchpoint = default_touchpoint
        self._key_attribute = key_attribute
        self._header = header

    def repeats_header(self, text: str) -> bool:
        """True for a row that is the header again (a rebuilt dead-letter file holds one per
        run, concatenated files one per file): the commands skip it."""
        return _repeats_header(text, self._header, self.columns)

    def parse(self, text: str) -> ActivityRequest:
        """One CSV row as a one-activity :class:`ActivityRequest`."""
        row = _CsvRecord(self.columns, text)
        try:
            return ActivityRequest(
                record_customer(row.plain, row.identifiers, self._key_attribute),
                record_touchpoint(row.plain, self._default_touchpoint),
                [record_activity(row.plain)],
                row.properties,
                record_device(row.device),
            )
        except ValidationError as exc:
            raise InputError(str(exc)) from None


def _known_activity_column(column: str) -> bool:
    if column in _CSV_COLUMNS:
        return True
    if (name := _suffix(column, _PROPERTY_PREFIX)) is not None:
        return bool(name)
    if (name := _suffix(column, _IDENTIFIER_PREFIX)) is not None:
        return _api_name(name)
    if (name := _suffix(column, _DEVICE_PREFIX)) is not None:
        return name in DEVICE_ALIASES
    return False


# -- customers ------------------------------------------------------------------------------------


class CsvCustomers:
    """Parses CSV rows with ``customer_key``, ``tid`` and ``id.<apiName>`` columns (others are
    ignored)."""

    def __init__(self, header: str, key_attribute: str = CUSTOMER_KEY_API_NAME) -> None:
        self.columns = _header(header, _is_customer_column)
        if not _has_customer_column(self.columns):
            raise InputError(_CUSTOMER_COLUMNS_NEEDED)
        bad = [
            c
            for c in self.columns
            if (name := _suffix(c, _IDENTIFIER_PREFIX)) is not None and not _api_name(name)
        ]
        if bad:
            raise InputError(f"bad identifier column(s): {', '.join(bad)}")
        self._key_attribute = key_attribute
        self._header = header

    def repeats_header(self, text: str) -> bool:
        """True for a row that is the header again: the commands skip it."""
        return _repeats_header(text, self._header, self.columns)

    def parse(self, text: str) -> Customer:
        """One CSV row as a :class:`Customer`."""
        row = _CsvRecord(self.columns, text)
        return erasable_customer(row.plain, row.identifiers, self._key_attribute)
