"""Read request bodies the way the emulated tenant does (the wire contract (docs/wire-contract.md)), without any I/O.

A body is parsed, checked against the JSON Schema of its call (``_schema``), then against what a
schema cannot say: no activity timestamp in the future, identifier API names the space knows.
Every refusal raises :class:`BadRequest` with the ``errorCode`` and message of the 400 body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs
import orjson

from ._schema import compile_checks, compile_validators, describe

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError as SchemaError

__all__ = [
    "CUSTOMER_NOT_FOUND",
    "ERROR_CODES",
    "GENERAL",
    "INVALID_ACTIVITY_TYPE_CODE",
    "INVALID_API_NAME",
    "INVALID_DATE_TIME",
    "INVALID_PROPOSITION_CODE",
    "INVALID_SITEKEY",
    "MAX_ACTIVITIES",
    "BadRequest",
    "Context",
    "RequestReader",
    "format_timestamp",
    "parse_timestamp",
]

# The spec's errorCode enum: every error body the emulator sends carries one of these.
INVALID_PROPOSITION_CODE: Final = "INVALID_PROPOSITION_CODE"
INVALID_ACTIVITY_TYPE_CODE: Final = "INVALID_ACTIVITY_TYPE_CODE"
INVALID_DATE_TIME: Final = "INVALID_DATE_TIME"
INVALID_API_NAME: Final = "INVALID_API_NAME"
INVALID_SITEKEY: Final = "INVALID_SITEKEY"
CUSTOMER_NOT_FOUND: Final = "CUSTOMER_NOT_FOUND"
GENERAL: Final = "GENERAL"
ERROR_CODES: Final = frozenset(
    {
        INVALID_PROPOSITION_CODE,
        INVALID_ACTIVITY_TYPE_CODE,
        INVALID_DATE_TIME,
        INVALID_API_NAME,
        INVALID_SITEKEY,
        CUSTOMER_NOT_FOUND,
        GENERAL,
    }
)
MAX_ACTIVITIES: Final = 100
# The errorCode of a schema violation, by the member at fault (else GENERAL).
_CODE_BY_MEMBER: Final = {
    "timestamp": INVALID_DATE_TIME,
    "locLastUpdated": INVALID_DATE_TIME,
    "apiName": INVALID_API_NAME,
    "structureApiName": INVALID_API_NAME,
}

Identifiers = tuple[tuple[str, str], ...]


class BadRequest(Exception):
    """The request is invalid: answered 400 with ``{"errorCode": code, "errorMessage": message}``."""

    def __init__(self, message: str, code: str = GENERAL) -> None:
        super().__init__(message)
        self.code = code


@attrs.frozen
class Context:
    """A checked ``customerContext``: who (TID, identifiers in request order), where, properties."""

    tid: str | None
    identifiers: Identifiers
    touchpoint: str
    properties: dict[str, str]


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 date-time (``Z`` or an offset) as an aware datetime."""
    moment = datetime.fromisoformat(text.upper())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def format_timestamp(moment: datetime) -> str:
    """Format like docs/wire-contract.md: UTC, seconds, milliseconds only when non-zero, ``Z`` suffix."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = moment.microsecond // 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


class RequestReader:
    """Parses and checks the three request bodies for one emulated tenant.

    ``clock_skew`` is how far (seconds) an activity timestamp may be ahead of ``now()`` before it
    counts as a future date: the sender's clock may run a little fast. ``identifier_attributes``
    (None: any) are the API names the space accepts in identifiers, besides ``key_attribute``.
    """

    def __init__(
        self,
        *,
        now: Callable[[], datetime],
        clock_skew: float,
        key_attribute: str,
        identifier_attributes: frozenset[str] | None,
    ) -> None:
        self._now = now
        self._skew = timedelta(seconds=clock_skew)
        self._attributes = (
            None if identifier_attributes is None else identifier_attributes | {key_attribute}
        )
        self._checks = compile_checks()
        self._validators = compile_validators()

    def activity(self, body: bytes) -> tuple[Context, list[dict[str, str]]]:
        """A send-activity body: its context and its activities as sent."""
        data = self._load("activity", body)
        activities: list[dict[str, str]] = data["activities"]
        latest: datetime | None = None
        for index, activity in enumerate(activities):
            stamp = activity.get("timestamp")
            if stamp is None:
                continue
            if latest is None:
                latest = self._now() + self._skew
            if parse_timestamp(stamp) > latest:
                raise BadRequest(
                    f"$.activities[{index}].timestamp: future dates are not supported",
                    INVALID_DATE_TIME,
                )
        return self._context(data["customerContext"]), activities

    def structure(self, body: bytes) -> tuple[Context, str]:
        """A structure body: its context and the structure's API name."""
        data = self._load("structure", body)
        return self._context(data["customerContext"]), data["structureApiName"]

    def delete(self, body: bytes) -> tuple[str | None, tuple[str, str] | None]:
        """A delete body: ``(tid, None)`` or ``(None, (apiName, value))``."""
        data = self._load("delete", body)
        identifier = data.get("identifier")
        if identifier is None:
            return data["tid"], None
        pair = (identifier["apiName"], identifier["value"])
        self._check_api_names((pair,))
        return None, pair

    def _load(self, kind: str, body: bytes) -> dict[str, Any]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest("request body is not valid JSON") from None
        if not self._checks[kind](data):
            raise _schema_error(self._validators[kind].iter_errors(data))
        result: dict[str, Any] = data
        return result

    def _context(self, context: Mapping[str, Any]) -> Context:
        identifiers = tuple((i["apiName"], i["value"]) for i in context.get("identifiers", ()))
        if self._attributes is not None:
            self._check_api_names(identifiers)
        properties = {p["name"]: p["value"] for p in context.get("properties", ())}
        return Context(context.get("tid"), identifiers, context["baseTouchpointUri"], properties)

    def _check_api_names(self, identifiers: Identifiers) -> None:
        known = self._attributes
        if known is None:
            return
        for api_name, _ in identifiers:
            if api_name not in known:
                raise BadRequest(
                    f"identifier apiName {api_name[:64]!r} is not an attribute of the space",
                    INVALID_API_NAME,
                )


def _schema_error(errors: Any) -> BadRequest:
    from jsonschema.exceptions import best_match

    error: SchemaError | None = best_match(errors)
    if error is None:  # the predicate and jsonschema disagree: a bug in the predicate compiler
        return BadRequest("request body does not match the schema")
    member = next((p for p in reversed(error.absolute_path) if isinstance(p, str)), "")
    return BadRequest(describe(error), _CODE_BY_MEMBER.get(member, GENERAL))
