"""Validate request bodies the way the emulated tenant does (WIRE.md), without any I/O.

Every check raises :class:`BadRequest` with the message the emulator returns in a 400 body.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import attrs
import orjson

__all__ = [
    "MAX_ACTIVITIES",
    "MAX_DYNAMIC_PROPOSITION",
    "BadRequest",
    "Context",
    "format_timestamp",
    "parse_activity_body",
    "parse_structure_body",
    "parse_timestamp",
]

MAX_ACTIVITIES = 100
MAX_DYNAMIC_PROPOSITION = 255
_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?Z")
_STRUCTURE_NAME = re.compile(r"[^\s]+")


class BadRequest(Exception):
    """The request is invalid: answered with 400 and this message."""


@attrs.frozen
class Context:
    """A validated ``customerContext`` plus the ``tid`` query parameter."""

    key: str | None
    tid: str | None
    touchpoint: str
    properties: dict[str, str]


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 UTC timestamp with a ``Z`` suffix, else raise :class:`BadRequest`."""
    if not _TIMESTAMP.fullmatch(text):
        raise BadRequest(f"timestamp must be RFC 3339 UTC with a Z suffix, got {text[:40]!r}")
    try:
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError:
        raise BadRequest(f"timestamp is not a valid date and time: {text[:40]!r}") from None


def format_timestamp(moment: datetime) -> str:
    """Format like WIRE.md: seconds, milliseconds only when non-zero, ``Z`` suffix."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = moment.microsecond // 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def _load(body: bytes) -> dict[str, object]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{what} must be a non-empty string")
    return value


def _context(data: dict[str, object], tid: str | None) -> Context:
    context = data.get("customerContext")
    if not isinstance(context, dict):
        raise BadRequest("customerContext is required and must be an object")
    touchpoint = _text(context.get("baseTouchpointUri"), "customerContext.baseTouchpointUri")
    key = None
    identifiers = context.get("identifiers", [])
    if not isinstance(identifiers, list):
        raise BadRequest("customerContext.identifiers must be a list")
    for identifier in identifiers:
        if not isinstance(identifier, dict):
            raise BadRequest("each identifier must be an object with apiName and value")
        api_name = _text(identifier.get("apiName"), "identifier apiName")
        value = _text(identifier.get("value"), "identifier value")
        if api_name.lower() != "customerkey":
            raise BadRequest(f"unknown identifier apiName {api_name[:40]!r}")
        key = value
    if key is None and tid is None:
        raise BadRequest("the customer must be identified by a customerkey identifier or a tid")
    properties: dict[str, str] = {}
    raw_properties = context.get("properties", [])
    if not isinstance(raw_properties, list):
        raise BadRequest("customerContext.properties must be a list")
    for prop in raw_properties:
        if not isinstance(prop, dict):
            raise BadRequest("each property must be an object with name and value")
        name = _text(prop.get("name"), "property name")
        prop_value = prop.get("value")
        if not isinstance(prop_value, str):
            raise BadRequest(f"property {name[:40]!r} value must be a string")
        properties[name] = prop_value
    return Context(key=key, tid=tid, touchpoint=touchpoint, properties=properties)


def _activity(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise BadRequest("each activity must be an object")
    activity = {
        "propositionCode": _text(raw.get("propositionCode"), "propositionCode"),
        "activityTypeCode": _text(raw.get("activityTypeCode"), "activityTypeCode"),
    }
    dynamic = raw.get("dynamicPropositionCode")
    if dynamic is not None:
        dynamic = _text(dynamic, "dynamicPropositionCode")
        if len(dynamic) > MAX_DYNAMIC_PROPOSITION:
            raise BadRequest(
                f"dynamicPropositionCode must be at most {MAX_DYNAMIC_PROPOSITION} characters"
            )
        activity["dynamicPropositionCode"] = dynamic
    timestamp = raw.get("timestamp")
    if timestamp is not None:
        if not isinstance(timestamp, str):
            raise BadRequest("timestamp must be a string")
        parse_timestamp(timestamp)
        activity["timestamp"] = timestamp
    return activity


def parse_activity_body(body: bytes, tid: str | None) -> tuple[Context, list[dict[str, str]]]:
    """Validate a send-activity body; return its context and the activities in wire form."""
    data = _load(body)
    context = _context(data, tid)
    activities = data.get("activities")
    if not isinstance(activities, list) or not activities:
        raise BadRequest("activities must be a non-empty list")
    if len(activities) > MAX_ACTIVITIES:
        raise BadRequest(f"at most {MAX_ACTIVITIES} activities per request, got {len(activities)}")
    return context, [_activity(raw) for raw in activities]


def parse_structure_body(body: bytes, tid: str | None) -> tuple[Context, str]:
    """Validate a structure request body; return its context and the structure API name."""
    data = _load(body)
    context = _context(data, tid)
    name = data.get("structureApiName")
    if not isinstance(name, str) or not _STRUCTURE_NAME.fullmatch(name):
        raise BadRequest("structureApiName must be a non-empty string without spaces")
    return context, name
