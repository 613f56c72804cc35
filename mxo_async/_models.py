"""Domain types: frozen attrs classes that validate on construction.

Validation here is about the *shape* of the input (what WIRE.md says MXO accepts); it raises
:class:`~mxo_async.ValidationError` naming the field, before any request can be built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

import attrs

from ._errors import MXOError, ValidationError

__all__ = [
    "MAX_ACTIVITIES_PER_REQUEST",
    "MAX_DYNAMIC_PROPOSITION_LENGTH",
    "Activity",
    "ActivityRequest",
    "ActivityResult",
    "Customer",
    "Erasure",
    "Identifier",
    "Outcome",
    "check_customer",
    "check_properties",
    "check_structure_name",
    "check_touchpoint",
]

MAX_ACTIVITIES_PER_REQUEST = 100
MAX_DYNAMIC_PROPOSITION_LENGTH = 255
# Clocks drift: a timestamp slightly ahead of ours is the sender's clock, not a future event.
FUTURE_TOLERANCE = timedelta(minutes=5)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S")
_MAX_TEXT = 4096

T = TypeVar("T")
R = TypeVar("R")


def _encodable(value: str) -> bool:
    """False for text that cannot be sent (a lone surrogate, e.g. from surrogateescape decoding)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(field: str, value: object, *, max_length: int = _MAX_TEXT) -> str:
    if (
        isinstance(value, str)
        and value
        and len(value) <= max_length
        and not value.isspace()
        and "\x00" not in value
        and (value.isascii() or _encodable(value))
    ):
        return value  # the common case, in one expression; the checks below name the problem
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value or value.isspace():
        raise ValidationError(field, "must not be empty")
    if len(value) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters (got {len(value)})")
    if "\x00" in value:
        raise ValidationError(field, "must not contain NUL characters")
    if not _encodable(value):
        raise ValidationError(field, "must be valid Unicode (it contains a lone surrogate)")
    return value


# Codes (propositions, activity types, dynamic propositions) repeat across millions of activities:
# the valid ones are remembered (a bounded set), so a repeat costs one set lookup. Only codes
# within the strictest code limit (MAX_DYNAMIC_PROPOSITION_LENGTH) are remembered, so a known code
# is valid in every code field.
_KNOWN_CODES: set[str] = set()
_MAX_KNOWN_CODES = 4096


def _code(field: str, value: object, *, remember: bool = True) -> str:
    if type(value) is str and value in _KNOWN_CODES:
        return value
    if (
        isinstance(value, str)
        and value
        and len(value) <= _MAX_TEXT
        and value == value.strip()
        and "\x00" not in value
        and (value.isascii() or _encodable(value))
    ):
        # Non-empty and unstripped, so not all whitespace: valid.
        if (
            remember
            and type(value) is str
            and len(value) <= MAX_DYNAMIC_PROPOSITION_LENGTH
            and len(_KNOWN_CODES) < _MAX_KNOWN_CODES
        ):
            _KNOWN_CODES.add(value)
        return value
    text = _text(field, value)
    if text != text.strip():
        raise ValidationError(field, "must not have leading or trailing whitespace")
    return text


def check_touchpoint(touchpoint: object, field: str = "touchpoint") -> str:
    """Return ``touchpoint`` if it is a URI with a scheme (``web://bank.com``), else raise."""
    if type(touchpoint) is str and touchpoint in _VALID_TOUCHPOINTS:
        return touchpoint
    text = _text(field, touchpoint)
    if not _SCHEME.match(text):
        raise ValidationError(
            field, f"must be a URI with a scheme such as 'web://site', got {text!r}"
        )
    if type(text) is str and len(_VALID_TOUCHPOINTS) < _MAX_REMEMBERED_TOUCHPOINTS:
        _VALID_TOUCHPOINTS.add(text)
    return text


# Touchpoints are few and repeat on every request: remember the ones already validated.
_VALID_TOUCHPOINTS: set[str] = set()
_MAX_REMEMBERED_TOUCHPOINTS = 1024


def check_properties(properties: object, field: str = "properties") -> dict[str, str]:
    """Return a plain ``dict`` copy of string-to-string context properties, else raise."""
    if properties is None or (type(properties) is dict and not properties):
        return {}
    if not isinstance(properties, Mapping):
        raise ValidationError(
            field, f"must be a mapping of str to str, got {type(properties).__name__}"
        )
    checked: dict[str, str] = {}
    for name, value in properties.items():
        if not isinstance(name, str) or not name or name.isspace():
            raise ValidationError(field, f"property names must be non-empty strings, got {name!r}")
        if not isinstance(value, str):
            raise ValidationError(
                f"{field}[{name!r}]", f"must be a string, got {type(value).__name__}"
            )
        if not (name.isascii() or _encodable(name)) or not (value.isascii() or _encodable(value)):
            raise ValidationError(field, "must be valid Unicode (it contains a lone surrogate)")
        checked[name] = value
    return checked


@attrs.frozen
class Customer:
    """One MXO customer, identified by a TID, a customer key, or both."""

    tid: str | None = None
    key: str | None = attrs.field(default=None, repr=lambda k: _mask(k))

    def __attrs_post_init__(self) -> None:
        if self.tid is None and self.key is None:
            raise ValidationError("customer", "needs a tid or a key (neither was given)")
        if self.tid is not None:
            _code("customer.tid", self.tid, remember=False)  # TIDs rarely repeat
        if self.key is not None:
            _text("customer.key", self.key)

    @classmethod
    def by_key(cls, key: str) -> Customer:
        """A customer known by its customer key (e.g. an e-mail address)."""
        return cls(None, key)

    @classmethod
    def by_tid(cls, tid: str) -> Customer:
        """A customer known by an MXO TID."""
        return cls(tid=tid)

    def masked(self) -> str:
        """A log-safe description: the key is masked, the TID (a pseudonym) is kept."""
        parts = []
        if self.tid is not None:
            parts.append(f"tid={self.tid}")
        if self.key is not None:
            parts.append(f"key={_mask(self.key)}")
        return " ".join(parts)


def _mask(value: str | None) -> str:
    """Mask an identifier for logs and reprs: keep a hint of its shape, not its content."""
    if value is None:
        return "None"
    if len(value) <= 4:
        return "'***'"
    return f"'{value[0]}***{value[-1]}'"


def _check_timestamp(value: object) -> None:
    field = "activity.timestamp"
    if not isinstance(value, datetime):
        raise ValidationError(field, f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, "must be timezone-aware (e.g. datetime.now(timezone.utc))")
    if value - datetime.now(UTC) > FUTURE_TOLERANCE:
        raise ValidationError(field, f"must not be in the future (got {value.isoformat()})")


@attrs.frozen
class Activity:
    """One interaction: a proposition code, an activity type and optional details."""

    proposition: str
    activity_type: str
    dynamic_proposition: str | None = None
    timestamp: datetime | None = None

    def __attrs_post_init__(self) -> None:
        # Known codes are checked inline (no call): this runs for every activity of a stream.
        known = _KNOWN_CODES
        proposition, activity_type = self.proposition, self.activity_type
        if not (type(proposition) is str and proposition in known):
            _code("activity.proposition", proposition)
        if not (type(activity_type) is str and activity_type in known):
            _code("activity.activity_type", activity_type)
        dynamic = self.dynamic_proposition
        if dynamic is not None and not (type(dynamic) is str and dynamic in known):
            _code("activity.dynamic_proposition", dynamic)
            if len(dynamic) > MAX_DYNAMIC_PROPOSITION_LENGTH:
                raise ValidationError(
                    "activity.dynamic_proposition",
                    f"must be at most {MAX_DYNAMIC_PROPOSITION_LENGTH} characters "
                    f"(got {len(dynamic)})",
                )
        if self.timestamp is not None:
            _check_timestamp(self.timestamp)


def _activities(value: Sequence[Activity]) -> tuple[Activity, ...]:
    if type(value) is tuple:
        return value  # tuple(value) would return this very object
    if isinstance(value, Activity):
        return (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValidationError(
            "activities", f"must be a sequence of Activity, got {type(value).__name__}"
        )
    return tuple(value)


@attrs.frozen
class ActivityRequest:
    """Activities for one customer at one touchpoint: the unit of ``send_activity``."""

    customer: Customer
    touchpoint: str
    activities: tuple[Activity, ...] = attrs.field(converter=_activities)
    properties: Mapping[str, str] = attrs.field(factory=dict, converter=check_properties)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.customer, Customer):
            raise ValidationError(
                "customer", f"must be a Customer, got {type(self.customer).__name__}"
            )
        check_touchpoint(self.touchpoint)
        count = len(self.activities)
        if not 1 <= count <= MAX_ACTIVITIES_PER_REQUEST:
            raise ValidationError(
                "activities",
                f"must hold 1 to {MAX_ACTIVITIES_PER_REQUEST} activities (got {count})",
            )
        for index, activity in enumerate(self.activities):
            if not isinstance(activity, Activity):
                raise ValidationError(
                    f"activities[{index}]", f"must be an Activity, got {type(activity).__name__}"
                )


@attrs.frozen
class ActivityResult:
    """What MXO answered to an activity: the customer's TID."""

    tid: str | None


@attrs.frozen
class Identifier:
    """A customer identifier as MXO names it (``apiName``/``value``)."""

    api_name: str
    value: str = attrs.field(repr=lambda v: _mask(v))


@attrs.frozen
class Erasure:
    """The result of deleting a customer: what MXO said it deletes.

    ``found`` is False when MXO did not know the customer (nothing left to delete).
    """

    tids: tuple[str, ...] = ()
    identifiers: tuple[Identifier, ...] = ()
    found: bool = True


@attrs.frozen
class Outcome(Generic[T, R]):
    """How one item of a fan-out settled: exactly one of ``result`` and ``error`` is set."""

    item: T
    result: R | None
    error: MXOError | None
    attempts: int
    index: int

    @property
    def ok(self) -> bool:
        """True when the item succeeded."""
        return self.error is None


def check_structure_name(structure: object) -> str:
    name = _text("structure", structure)
    if any(ch.isspace() for ch in name):
        raise ValidationError(
            "structure", f"Pull Structure API names contain no spaces, got {name!r}"
        )
    return name


def check_customer(customer: object) -> Customer:
    if not isinstance(customer, Customer):
        raise ValidationError("customer", f"must be a Customer, got {type(customer).__name__}")
    return customer
