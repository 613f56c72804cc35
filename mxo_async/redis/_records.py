"""Stream entries as ``mxo-async send`` NDJSON lines: one schema, one parser.

The parser is the library's (``mxo_async/_input_records.py``), the one ``mxo-async send`` uses;
it needs neither click nor rich, so a worker without the ``cli`` extra uses it as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

from .._input_records import DEVICE_FIELDS, InputError, parse_activity_json
from .._models import ActivityRequest, Customer

__all__ = [
    "InputError",
    "check_record",
    "customer_of",
    "customer_text",
    "encode_record",
    "entry_time",
    "parse_entry",
]


def _time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def encode_record(request: ActivityRequest) -> str:
    """``request`` as one NDJSON line of the ``send`` schema (the several-activities form)."""
    customer = request.customer
    record: dict[str, object] = {}
    if customer.key is not None:
        record["customer_key"] = customer.key
    if customer.tid is not None:
        record["tid"] = customer.tid
    if customer.identifiers:
        record["identifiers"] = dict(customer.identifiers)
    record["touchpoint"] = request.touchpoint
    if request.properties:
        record["properties"] = dict(request.properties)
    if request.device is not None:
        device: dict[str, object] = {}
        for field, wire in DEVICE_FIELDS.items():
            value = getattr(request.device, field)
            if value is not None:
                device[wire] = _time(value) if isinstance(value, datetime) else value
        record["device"] = device
    activities = []
    for activity in request.activities:
        item: dict[str, object] = {
            "proposition": activity.proposition,
            "activity_type": activity.activity_type,
        }
        if activity.dynamic_proposition is not None:
            item["dynamic_proposition"] = activity.dynamic_proposition
        if activity.timestamp is not None:
            item["timestamp"] = _time(activity.timestamp)
        activities.append(item)
    record["activities"] = activities
    return orjson.dumps(record).decode()


def check_record(record: str | Mapping[str, object]) -> str:
    """A record given as a line or a mapping, checked with the parser, as one line.

    Raises:
        InputError: the record does not follow the ``send`` schema.
    """
    line = record if isinstance(record, str) else orjson.dumps(dict(record)).decode()
    if "\n" in line.strip():
        raise InputError("a record is one line (NDJSON): it holds a line break")
    parse_activity_json(line, None)
    return line.strip()


def entry_time(entry_id: str) -> datetime:
    """When a stream entry was added: the milliseconds part of its ID, as an aware UTC time."""
    return _millisecond(entry_id.partition("-")[0])


# Entries added together share their millisecond (a producer's pipeline adds hundreds in one):
# the worker reads them in order, so the last few times cover nearly every entry.
@functools.lru_cache(maxsize=16)
def _millisecond(milliseconds: str) -> datetime:
    return datetime.fromtimestamp(int(milliseconds) / 1000, UTC)


def parse_entry(text: str, entry_id: str, key_attribute: str) -> ActivityRequest:
    """The request of one entry; activities without a timestamp get the entry's time.

    Why: a worker sends an entry whenever it gets it (at once, after a reclaim, after a retry,
    on whichever worker), so the time of *sending* does not follow the order of *producing*.
    MXO orders a customer's activities by their timestamp, and the entry ID is the time the
    producer added it; stamping with it keeps the customer's timeline as produced.

    Raises:
        InputError: the record does not follow the ``send`` schema.
    """
    return parse_activity_json(text, None, key_attribute, entry_time(entry_id))


def customer_text(customer: Customer) -> str:
    """A customer as canonical JSON (sorted keys): equal customers give equal text."""
    return orjson.dumps(
        {"tid": customer.tid, "key": customer.key, "identifiers": dict(customer.identifiers)},
        option=orjson.OPT_SORT_KEYS,
    ).decode()


def customer_of(text: str) -> Customer:
    """The customer of :func:`customer_text`."""
    data = orjson.loads(text)
    return Customer(tid=data["tid"], key=data["key"], identifiers=data["identifiers"] or {})
