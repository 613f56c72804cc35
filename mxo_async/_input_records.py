"""Input records of ``send`` and ``erase``: the NDJSON field mappings, one schema and one parser
for the command line (``mxo_async.cli``) and the stream workers (``mxo_async.redis``).

Activities, NDJSON, one object per line, either one activity::

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

Customers (``erase``): NDJSON ``{"customer_key": ..., "tid": ..., "identifiers": {...}}``, or
plain text, one customer key per line (``tid:<TID>`` for a TID). A delete names one customer by
its TID or by exactly one identifier (the key counts as one), so a customer without a TID and
with several identifiers is an invalid line.

The helpers the CSV readers of the command line share (``record_customer``, ``record_activity``,
...) take one record's fields as a mapping, whatever format they came from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Final

import orjson

from ._errors import ValidationError
from ._models import Activity, ActivityRequest, Customer, Device
from ._wire import CUSTOMER_KEY_API_NAME, delete_target, identifiers

__all__ = [
    "ACTIVITY_KEYS",
    "CONTEXT_KEYS",
    "CUSTOMER_KEYS",
    "DEVICE_ALIASES",
    "DEVICE_FIELDS",
    "InputError",
    "erasable_customer",
    "parse_activity_json",
    "parse_customer_json",
    "parse_customer_text",
    "record_activity",
    "record_customer",
    "record_device",
    "record_touchpoint",
]

CONTEXT_KEYS = frozenset(
    {"customer_key", "tid", "identifiers", "touchpoint", "properties", "device"}
)
ACTIVITY_KEYS = frozenset({"proposition", "activity_type", "dynamic_proposition", "timestamp"})
CUSTOMER_KEYS = frozenset({"customer_key", "tid", "identifiers"})

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
DEVICE_ALIASES: Final = {
    **{field: field for field in DEVICE_FIELDS},
    **{wire: field for field, wire in DEVICE_FIELDS.items()},
}
_DEVICE_REQUIRED: Final = ("app_name", "dev_type", "os_name")
_DEVICE_NUMBERS: Final = frozenset({"latitude", "longitude", "location_accuracy"})


class InputError(ValueError):
    """One input line cannot be used; the message says why (and never echoes the line)."""


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


def record_customer(
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


def record_device(fields: Mapping[str, object], where: str = "device") -> Device | None:
    """A :class:`Device` from its fields under either spelling; None when there are none.

    Raises:
        InputError: an unknown or doubled field, a missing required one, or a wrong type.
    """
    values: dict[str, object] = {}
    spelled: dict[str, str] = {}
    unknown = []
    for name, value in fields.items():
        field = DEVICE_ALIASES.get(name)
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
    device = record_device(value)
    if device is None:
        raise InputError("device: must not be empty (leave it out instead)")
    return device


def record_activity(
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


def record_touchpoint(record: Mapping[str, object], default: str | None) -> str:
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
            unknown = set(record) - CONTEXT_KEYS - {"activities"}
            items = record["activities"]
            if not isinstance(items, list) or not items:
                raise InputError("activities: must be a non-empty array of objects")
            activities = [_activity_item(item, n, default_time) for n, item in enumerate(items)]
        else:
            unknown = set(record) - CONTEXT_KEYS - ACTIVITY_KEYS
            activities = [record_activity(record, "", default_time)]
        if unknown:
            raise InputError(f"unknown field(s): {', '.join(sorted(unknown))}")
        return ActivityRequest(
            record_customer(record, _identifiers(record.get("identifiers")), key_attribute),
            record_touchpoint(record, default_touchpoint),
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
    unknown = set(item) - ACTIVITY_KEYS
    if unknown:
        raise InputError(f"{where}unknown field(s): {', '.join(sorted(unknown))}")
    return record_activity(item, where, default_time)


def _json_object(text: str) -> dict[str, object]:
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise InputError(f"expected a JSON object, got {_json_type(record)}")
    return record


def erasable_customer(
    record: Mapping[str, object], found: Mapping[str, str], key_attribute: str
) -> Customer:
    """A customer a DELETE can name (its TID, or exactly one identifier)."""
    try:
        customer = record_customer(record, found, key_attribute)
        delete_target(customer, key_attribute)
    except ValidationError as exc:
        raise InputError(str(exc)) from None
    return customer


def parse_customer_json(text: str, key_attribute: str = CUSTOMER_KEY_API_NAME) -> Customer:
    """``{"customer_key": ..., "tid": ..., "identifiers": {...}}`` as a :class:`Customer`."""
    record = _json_object(text)
    unknown = set(record) - CUSTOMER_KEYS
    if unknown:
        raise InputError(f"unknown field(s): {', '.join(sorted(unknown))}")
    return erasable_customer(record, _identifiers(record.get("identifiers")), key_attribute)


def parse_customer_text(text: str, key_attribute: str = CUSTOMER_KEY_API_NAME) -> Customer | None:
    """A plain-text line: a customer key, ``tid:<TID>``, or None for a blank or ``#`` line."""
    value = text.strip()
    if not value or value.startswith("#"):
        return None
    if value.startswith("tid:"):
        return erasable_customer({"tid": value[4:].strip()}, {}, key_attribute)
    return erasable_customer({"customer_key": value}, {}, key_attribute)
