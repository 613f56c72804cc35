"""Domain types: frozen attrs classes that validate on construction.

Validation here is about the *shape* of the input (what docs/wire-contract.md says MXO accepts); it raises
:class:`~mxo_async.ValidationError` naming the field, before any request can be built.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Generic, NoReturn, TypeVar

import attrs

from ._errors import MXOError, ValidationError

__all__ = [
    "DEVICE_TYPES",
    "MAX_ACTIVITIES_PER_REQUEST",
    "MAX_DYNAMIC_PROPOSITION_LENGTH",
    "OPERATING_SYSTEMS",
    "Activity",
    "ActivityError",
    "ActivityRequest",
    "ActivityResult",
    "Customer",
    "Device",
    "Erasure",
    "Identifier",
    "Outcome",
    "Structure",
    "check_customer",
    "check_properties",
    "check_structure_name",
    "check_touchpoint",
]

MAX_ACTIVITIES_PER_REQUEST = 100
MAX_DYNAMIC_PROPOSITION_LENGTH = 255
# MXO refuses future timestamps (400 INVALID_DATE_TIME for the whole request). A few seconds ahead
# of our clock is clock drift between hosts, not a future event; more is refused here, per
# activity, before it can fail the request it would travel in. The emulator allows the same.
FUTURE_TOLERANCE = timedelta(seconds=5)
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
    """``value`` if it is text MXO accepts, else a ValidationError naming the problem."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value or value.isspace():
        raise ValidationError(field, "must not be empty")
    if len(value) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters (got {len(value)})")
    if "\x00" in value:
        raise ValidationError(field, "must not contain NUL characters")
    if not (value.isascii() or _encodable(value)):
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
    text = _text(field, value)
    if text != text.strip():
        raise ValidationError(field, "must not have leading or trailing whitespace")
    if (
        remember
        and type(text) is str
        and len(text) <= MAX_DYNAMIC_PROPOSITION_LENGTH
        and len(_KNOWN_CODES) < _MAX_KNOWN_CODES
    ):
        _KNOWN_CODES.add(text)
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


def check_properties(properties: object, field: str = "properties") -> Mapping[str, str]:
    """Return a read-only copy of string-to-string context properties, else raise."""
    if type(properties) is _FrozenMapping:
        return properties  # validated when it was made
    if properties is None or (type(properties) is dict and not properties):
        return _NO_PROPERTIES
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
    return _FrozenMapping(checked)


class _FrozenMapping(dict[str, str]):
    """A read-only, hashable and picklable ``{str: str}``.

    A ``dict`` underneath, so reading it (iteration, ``len``, lookups) runs at C speed on every
    request; every method that would change it raises ``TypeError``.
    """

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is read-only")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[type[_FrozenMapping], tuple[dict[str, str]]]:
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return dict.__repr__(self)


def _check_identifiers(value: object) -> Mapping[str, str]:
    """A read-only copy of ``{api_name: value}``; names are attribute API names, values text."""
    if type(value) is _FrozenMapping:
        return value  # validated when it was made (the default, or another Customer's)
    if value is None or (type(value) is dict and not value):
        return _NO_IDENTIFIERS
    if not isinstance(value, Mapping):
        raise ValidationError(
            "customer.identifiers",
            f"must be a mapping of attribute API name to value, got {type(value).__name__}",
        )
    checked: dict[str, str] = {}
    for api_name, text in value.items():
        name = _code("customer.identifiers", api_name, remember=False)
        if any(ch.isspace() for ch in name):
            raise ValidationError(
                "customer.identifiers", f"attribute API names contain no spaces, got {name!r}"
            )
        checked[name] = _text(f"customer.identifiers[{name!r}]", text)
    return _FrozenMapping(checked)


_NO_IDENTIFIERS: Mapping[str, str] = _FrozenMapping({})
_NO_PROPERTIES: Mapping[str, str] = _FrozenMapping({})


@attrs.frozen
class Customer:
    """One MXO customer, identified by a TID, a customer key, other identifiers, or several.

    ``key`` is sent under the client's ``customer_key_attribute`` (default ``customerkey``);
    ``identifiers`` maps further attribute API names of the tenant's space to values (sending
    several links them to one customer).
    """

    tid: str | None = None
    key: str | None = attrs.field(default=None, repr=lambda k: _mask(k))
    identifiers: Mapping[str, str] = attrs.field(
        default=_NO_IDENTIFIERS,
        repr=lambda ids: "{" + ", ".join(f"{n!r}: {_mask(v)}" for n, v in ids.items()) + "}",
    )

    def __attrs_post_init__(self) -> None:
        if self.identifiers is not _NO_IDENTIFIERS:
            # Checked and frozen here rather than by a converter: most customers have none.
            object.__setattr__(self, "identifiers", _check_identifiers(self.identifiers))
        if self.tid is None and self.key is None and not self.identifiers:
            raise ValidationError(
                "customer", "needs a tid, a key or an identifier (none was given)"
            )
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

    @classmethod
    def by_identifier(cls, api_name: str, value: str) -> Customer:
        """A customer known by the value of one attribute of the space (``email``, ...)."""
        return cls(identifiers={api_name: value})

    def masked(self) -> str:
        """A log-safe description: key and identifiers are masked, the TID (a pseudonym) kept."""
        parts = []
        if self.tid is not None:
            parts.append(f"tid={self.tid}")
        if self.key is not None:
            parts.append(f"key={_mask(self.key)}")
        parts.extend(f"{name}={_mask(value)}" for name, value in self.identifiers.items())
        return " ".join(parts)


def _mask(value: str | None) -> str:
    """Mask an identifier for logs and reprs: keep a hint of its shape, not its content."""
    if value is None:
        return "None"
    if len(value) <= 4:
        return "'***'"
    return f"'{value[0]}***{value[-1]}'"


def _check_timestamp(value: object, field: str = "activity.timestamp") -> None:
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


# The spec's enums for a device's type and operating system (docs/wire-contract.md, "The customer context").
DEVICE_TYPES: Final = frozenset(
    {
        "GAME_CONSOLE",
        "PDA",
        "PERSONAL_COMPUTER",
        "SMART_TV",
        "SMARTPHONE",
        "TABLET",
        "WEARABLE",
        "OTHER",
    }
)
OPERATING_SYSTEMS: Final = frozenset({"ANDROID", "WINDOWS", "IOS", "OSX", "LINUX", "OTHER"})


_DEVICE_TEXT: Final = (
    "app_version",
    "manufacturer",
    "model",
    "os_version",
    "ip_address",
    "locale",
    "push_token",
)
_DEVICE_NUMBERS: Final = (
    ("latitude", -90.0, 90.0),
    ("longitude", -180.0, 180.0),
    ("location_accuracy", 0.0, math.inf),
)


@attrs.frozen
class Device:
    """The customer's current device, sent in the customer context (all but three optional).

    ``dev_type`` and ``os_name`` take the spec's values (``SMARTPHONE``, ``IOS``, ...; see
    :data:`DEVICE_TYPES` and :data:`OPERATING_SYSTEMS`).
    """

    app_name: str
    dev_type: str
    os_name: str
    app_version: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    os_version: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location_updated: datetime | None = None
    location_accuracy: float | None = None
    ip_address: str | None = attrs.field(default=None, repr=False)  # personal data
    locale: str | None = None
    push_token: str | None = attrs.field(default=None, repr=False)  # a credential of sorts

    def __attrs_post_init__(self) -> None:
        _text("device.app_name", self.app_name)
        for field, value, allowed in (
            ("dev_type", self.dev_type, DEVICE_TYPES),
            ("os_name", self.os_name, OPERATING_SYSTEMS),
        ):
            if value not in allowed:
                raise ValidationError(
                    f"device.{field}", f"must be one of {', '.join(sorted(allowed))}, got {value!r}"
                )
        for field in _DEVICE_TEXT:
            value = getattr(self, field)
            if value is not None:
                _text(f"device.{field}", value)
        for field, low, high in _DEVICE_NUMBERS:
            number = getattr(self, field)
            if number is None:
                continue
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise ValidationError(
                    f"device.{field}", f"must be a number, got {type(number).__name__}"
                )
            if not (math.isfinite(number) and low <= number <= high):
                raise ValidationError(
                    f"device.{field}", f"must be between {low} and {high}, got {number}"
                )
        if self.location_updated is not None:
            _check_timestamp(self.location_updated, "device.location_updated")


@attrs.frozen
class ActivityRequest:
    """Activities for one customer at one touchpoint: the unit of ``send_activity``."""

    customer: Customer
    touchpoint: str
    activities: tuple[Activity, ...] = attrs.field(converter=_activities)
    properties: Mapping[str, str] = attrs.field(default=_NO_PROPERTIES, converter=check_properties)
    device: Device | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.customer, Customer):
            raise ValidationError(
                "customer", f"must be a Customer, got {type(self.customer).__name__}"
            )
        device = self.device
        if device is not None and not isinstance(device, Device):
            raise ValidationError("device", f"must be a Device, got {type(device).__name__}")
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
class ActivityError:
    """One activity MXO did not process: its ``errorCode``, message and the echoed activity.

    ``activity`` is None when the answer did not echo a readable activity.
    """

    code: str
    message: str
    activity: Activity | None = None


@attrs.frozen
class ActivityResult:
    """What MXO answered to an activity request: the customer's TID and the rejected activities.

    ``errors`` is empty when every activity was processed (``ok``).
    """

    tid: str
    errors: tuple[ActivityError, ...] = ()

    @property
    def ok(self) -> bool:
        """True when MXO processed every activity of the request."""
        return not self.errors


@attrs.frozen
class Structure(Generic[T]):
    """A Pull Structure evaluated for one customer: its API name, the TID and its attributes.

    ``attributes`` is a dict, or an instance of the ``into=`` type passed to ``get_structure``.
    """

    name: str
    tid: str | None
    attributes: T


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
