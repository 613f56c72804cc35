"""Turn input lines into requests: the documented NDJSON and CSV field mappings.

Activities (``send``), NDJSON, one object per line, either one activity::

    {"customer_key": "alice@example.com", "tid": "...", "identifiers": {"email": "a@x.com"},
     "touchpoint": "web://bank.com", "proposition": "mortgage", "activity_type": "view",
     "dynamic_proposition": "fixed-5y", "timestamp": "2024-05-01T12:00:00Z",
     "properties": {"campaign": "summer"},
     "device": {"appName": "BankApp", "devType": "SMARTPHONE", "osName": "IOS"}}

or several activities of one customer context: the same keys, with ``"activities": [{"proposition":
..., "activity_type": ..., "dynamic_proposition": ..., "timestamp": ...}, ...]`` instead of the
activity keys. The customer is ``customer_key`` (sent under the client's key attribute), ``tid``
and/or ``identifiers`` (attribute API name to value; at least one of the three is required).
``touchpoint`` falls back to ``--touchpoint``; ``timestamp`` is RFC 3339 with a zone (omitted:
MXO uses the time it receives it). ``device`` takes either spelling of each field (not both):
the wire name (``appName``, ``devType``, ``osName``, ``appVer``, ``devMfr``, ``devModel``,
``osVer``, ``locLatitude``, ``locLongitude``, ``locLastUpdated``, ``locHorzAccuracy``,
``ipAddress``, ``locale``, ``pushToken``) or the :class:`~mxo_async.Device` field name
(``app_name``, ``dev_type``, ``os_name``, ``app_version``, ``manufacturer``, ``model``,
``os_version``, ``latitude``, ``longitude``, ``location_updated``, ``location_accuracy``,
``ip_address``, ``locale``, ``push_token``); the first three are required, coordinates and
accuracy are numbers (a numeric string is accepted), ``locLastUpdated`` an RFC 3339 date-time
with a zone. Empty strings are absent values. Unknown keys are errors (a misspelt key would
otherwise be dropped silently).

Activities, CSV: a header line, then one activity per row. Columns ``customer_key``, ``tid``,
``touchpoint``, ``proposition``, ``activity_type``, ``dynamic_proposition``, ``timestamp``,
``prop.<name>`` for context properties, ``id.<apiName>`` for identifiers and ``device.<field>``
(either spelling, as in NDJSON) for the device; empty cells are absent values, and a row whose
device cells are all empty has no device. One record per line: a quoted field may hold commas
and quotes but not line breaks. A row equal to the header is skipped (a dead-letter file rebuilt
with ``jq -r .input`` holds the header of each run).

NDJSON means one JSON object per line: an input that starts with a JSON array or a JSON object
spread over several lines is refused once, before anything is sent (:func:`peek_ndjson`).

Customers (``erase``): NDJSON ``{"customer_key": ..., "tid": ..., "identifiers": {...}}``; CSV
with ``customer_key``, ``tid`` and/or ``id.<apiName>`` columns (others are ignored); or plain
text, one customer key per line (``tid:<TID>`` for a TID). A delete names one customer by its
TID or by exactly one identifier (the key counts as one), so a customer without a TID and with
several identifiers is an invalid line. Blank lines, and in plain text lines starting with
``#``, are skipped.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from datetime import datetime
from typing import Final, Literal, TypeVar

import orjson

from mxo_async import Activity, ActivityRequest, Customer, Device, ValidationError
from mxo_async._wire import CUSTOMER_KEY_API_NAME, delete_target, identifiers

from ._lines import Line

__all__ = [
    "ACTIVITY_FORMATS",
    "CUSTOMER_FORMATS",
    "DEVICE_FIELDS",
    "CsvActivities",
    "CsvCustomers",
    "InputError",
    "check_ndjson_start",
    "detect_format",
    "first_line",
    "parse_activity_json",
    "parse_customer_json",
    "parse_customer_text",
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
_CONTEXT_KEYS = frozenset(
    {"customer_key", "tid", "identifiers", "touchpoint", "properties", "device"}
)
_ACTIVITY_KEYS = frozenset({"proposition", "activity_type", "dynamic_proposition", "timestamp"})
_CUSTOMER_KEYS = frozenset({"customer_key", "tid", "identifiers"})
_CSV_COLUMNS = frozenset(_CONTEXT_KEYS - {"properties", "identifiers", "device"} | _ACTIVITY_KEYS)
_PROPERTY_PREFIX = "prop."
_IDENTIFIER_PREFIX = "id."
_DEVICE_PREFIX = "device."

# Device field name -> its wire name (docs/wire-contract.md, "The customer context"); input takes either.
DEVICE_FIELDS: Final = {
    "app_name": "appName",
    "dev_type": "devType",
    "os_name": "osName",
    "app_version": "appVer",
    "manufacturer": "devMfr",
    "model": "devModel",
    "os_version": "osVer",
    "latitude": "locLatitude",
    "longitude": "locLongitude",
    "location_updated": "locLastUpdated",
    "location_accuracy": "locHorzAccuracy",
    "ip_address": "ipAddress",
    "locale": "locale",
    "push_token": "pushToken",
}
_DEVICE_ALIASES: Final = {
    **{field: field for field in DEVICE_FIELDS},
    **{wire: field for field, wire in DEVICE_FIELDS.items()},
}
_DEVICE_REQUIRED: Final = ("app_name", "dev_type", "os_name")
_DEVICE_NUMBERS: Final = frozenset({"latitude", "longitude", "location_accuracy"})


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


# -- activities -----------------------------------------------------------------------------------


def _optional_text(record: Mapping[str, object], key: str, where: str = "") -> str | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(f"{where}{key}: must be a string, got {_json_type(value)}")
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


def _timestamp(text: str | None, field: str = "timestamp") -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{field}: not an RFC 3339 date-time: {text!r}") from None
    if moment.tzinfo is None:
        raise InputError(f"{field}: needs a time zone such as 'Z' or '+02:00': {text!r}")
    return moment


def _identifiers(value: object) -> dict[str, str]:
    """``{apiName: value}`` from NDJSON; empty values are absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(
            f"identifiers: must be an object of attribute API name to value, got {_json_type(value)}"
        )
    for name, item in value.items():
        if not isinstance(item, str):
            raise InputError(f"identifiers.{name}: must be a string, got {_json_type(item)}")
    return {name: item for name, item in value.items() if item != ""}


def _customer(
    record: Mapping[str, object], found: Mapping[str, str], key_attribute: str
) -> Customer:
    """The customer of a record; ``found`` are its identifiers. Raises ValidationError too."""
    key = _optional_text(record, "customer_key")
    tid = _optional_text(record, "tid")
    if key is None and tid is None and not found:
        raise InputError("customer_key, tid or identifiers is required")
    customer = Customer(tid=tid, key=key, identifiers=found)
    identifiers(customer, key_attribute)  # the key attribute given two values raises now
    return customer


def _device(fields: Mapping[str, object], where: str = "device") -> Device | None:
    """A :class:`Device` from its fields under either spelling; None when there are none.

    Raises:
        InputError: an unknown or doubled field, a missing required one, or a wrong type.
    """
    values: dict[str, object] = {}
    spelled: dict[str, str] = {}
    unknown = []
    for name, value in fields.items():
        field = _DEVICE_ALIASES.get(name)
        if field is None:
            unknown.append(name)
            continue
        if field in spelled:
            raise InputError(f"{where}: {field} is given twice (as {spelled[field]} and {name})")
        spelled[field] = name
        if value is not None and value != "":
            values[field] = value
    if unknown:
        raise InputError(f"{where}: unknown field(s): {', '.join(sorted(unknown))}")
    if not values:
        return None
    for field in _DEVICE_REQUIRED:
        if field not in values:
            raise InputError(f"{where}: {DEVICE_FIELDS[field]} is required")
    arguments: dict[str, object] = {}
    for field, value in values.items():
        label = f"{where}.{spelled[field]}"
        if field in _DEVICE_NUMBERS:
            arguments[field] = _number(value, label)
        elif not isinstance(value, str):
            raise InputError(f"{label}: must be a string, got {_json_type(value)}")
        elif field == "location_updated":
            arguments[field] = _timestamp(value, label)
        else:
            arguments[field] = value
    try:
        return Device(**arguments)  # type: ignore[arg-type]  # each value's type is checked above
    except ValidationError as exc:  # name the field as the input spelled it
        field = exc.field.removeprefix("device.")
        raise InputError(f"{where}.{spelled.get(field, field)}: {exc.problem}") from None


def _number(value: object, label: str) -> float:
    """A JSON number, or a CSV cell holding one."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"{label}: must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise InputError(f"{label}: must be a finite number, got {value!r}")
        return number
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{label}: must be a number, got {_json_type(value)}")
    return float(value)


def _json_device(value: object) -> Device | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError(f"device: must be an object, got {_json_type(value)}")
    device = _device(value)
    if device is None:
        raise InputError("device: must not be empty (leave it out instead)")
    return device


def _activity(
    record: Mapping[str, object], where: str = "", default_time: datetime | None = None
) -> Activity:
    proposition = _optional_text(record, "proposition", where)
    activity_type = _optional_text(record, "activity_type", where)
    if proposition is None or activity_type is None:
        missing = "proposition" if proposition is None else "activity_type"
        raise InputError(f"{where}{missing} is required")
    return Activity(
        proposition,
        activity_type,
        _optional_text(record, "dynamic_proposition", where),
        _timestamp(_optional_text(record, "timestamp", where)) or default_time,
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


def parse_activity_json(
    text: str,
    default_touchpoint: str | None,
    key_attribute: str = CUSTOMER_KEY_API_NAME,
    default_time: datetime | None = None,
) -> ActivityRequest:
    """One NDJSON line as an :class:`ActivityRequest` (see the module docstring).

    ``key_attribute`` is the client's customer key attribute: ``identifiers`` may repeat the
    key under it, but not give it another value. ``default_time`` stamps activities without a
    timestamp (a fleet worker gives the time the line was produced).

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
            activities = [_activity_item(item, n, default_time) for n, item in enumerate(items)]
        else:
            unknown = set(record) - _CONTEXT_KEYS - _ACTIVITY_KEYS
            activities = [_activity(record, "", default_time)]
        if unknown:
            raise InputError(f"unknown field(s): {', '.join(sorted(unknown))}")
        return ActivityRequest(
            _customer(record, _identifiers(record.get("identifiers")), key_attribute),
            _touchpoint(record, default_touchpoint),
            activities,
            _properties(record.get("properties")),
            _json_device(record.get("device")),
        )
    except ValidationError as exc:
        raise InputError(str(exc)) from None


def _activity_item(item: object, index: int, default_time: datetime | None = None) -> Activity:
    where = f"activities[{index}]."
    if not isinstance(item, dict):
        raise InputError(f"activities[{index}]: must be an object, got {_json_type(item)}")
    unknown = set(item) - _ACTIVITY_KEYS
    if unknown:
        raise InputError(f"{where}unknown field(s): {', '.join(sorted(unknown))}")
    return _activity(item, where, default_time)


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
                _customer(row.plain, row.identifiers, self._key_attribute),
                _touchpoint(row.plain, self._default_touchpoint),
                [_activity(row.plain)],
                row.properties,
                _device(row.device),
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
        return name in _DEVICE_ALIASES
    return False


# -- customers ------------------------------------------------------------------------------------


def _erasable(
    record: Mapping[str, object], found: Mapping[str, str], key_attribute: str
) -> Customer:
    """A customer a DELETE can name (its TID, or exactly one identifier)."""
    try:
        customer = _customer(record, found, key_attribute)
        delete_target(customer, key_attribute)
    except ValidationError as exc:
        raise InputError(str(exc)) from None
    return customer


def parse_customer_json(text: str, key_attribute: str = CUSTOMER_KEY_API_NAME) -> Customer:
    """``{"customer_key": ..., "tid": ..., "identifiers": {...}}`` as a :class:`Customer`."""
    record = _json_object(text)
    unknown = set(record) - _CUSTOMER_KEYS
    if unknown:
        raise InputError(f"unknown field(s): {', '.join(sorted(unknown))}")
    return _erasable(record, _identifiers(record.get("identifiers")), key_attribute)


def parse_customer_text(text: str, key_attribute: str = CUSTOMER_KEY_API_NAME) -> Customer | None:
    """A plain-text line: a customer key, ``tid:<TID>``, or None for a blank or ``#`` line."""
    value = text.strip()
    if not value or value.startswith("#"):
        return None
    if value.startswith("tid:"):
        return _erasable({"tid": value[4:].strip()}, {}, key_attribute)
    return _erasable({"customer_key": value}, {}, key_attribute)


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
        return _erasable(row.plain, row.identifiers, self._key_attribute)
