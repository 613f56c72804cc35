"""Emulator configuration, the tenant's catalogue of known codes, and the counters it keeps."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import attrs
import orjson

from ._faults import Faults

__all__ = ["Catalogue", "Counters", "EmulatorConfig"]

# Clocks drift: an activity timestamp this many seconds ahead of the emulator's clock is still
# "now", not a future date. A few seconds at most: the spec does not support future dates.
DEFAULT_CLOCK_SKEW = 5.0


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"EmulatorConfig.{attribute.name} must be > 0, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"EmulatorConfig.{attribute.name} must be a finite number >= 0")


def _api_name(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        raise ValueError(
            f"EmulatorConfig.{attribute.name} must be a non-empty API name without spaces"
        )


def _codes(value: Iterable[str] | None) -> frozenset[str] | None:
    """A catalogue list: None (anything is known) or a set of non-empty strings."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"a catalogue list must be a list of strings, got {type(value).__name__}")
    codes = list(value)
    for code in codes:
        if not isinstance(code, str) or not code:
            raise ValueError(f"catalogue codes must be non-empty strings, got {code!r}")
    return frozenset(codes)


@attrs.frozen
class Catalogue:
    """What the tenant's space knows. ``None`` (the default for each) accepts anything.

    An activity whose ``propositionCode`` is not in ``propositions`` (or whose
    ``activityTypeCode`` is not in ``activity_types``) is not stored: the 200 lists it in
    ``errors`` with ``INVALID_PROPOSITION_CODE`` (or ``INVALID_ACTIVITY_TYPE_CODE``).
    An identifier whose ``apiName`` is neither the key attribute nor in ``identifier_attributes``
    makes the request a 400 ``INVALID_API_NAME``.
    """

    propositions: frozenset[str] | None = attrs.field(default=None, converter=_codes)
    activity_types: frozenset[str] | None = attrs.field(default=None, converter=_codes)
    identifier_attributes: frozenset[str] | None = attrs.field(default=None, converter=_codes)

    @classmethod
    def from_json(cls, data: bytes | str) -> Catalogue:
        """Read ``{"propositions": [...], "activity_types": [...], "identifier_attributes": [...]}``.

        Each member is optional (absent or null: anything is accepted).

        Raises:
            ValueError: not JSON, not an object, an unknown member, or not lists of strings.
        """
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the catalogue is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError("the catalogue must be a JSON object")
        names = {field.name for field in attrs.fields(cls)}
        unknown = sorted(set(parsed) - names)
        if unknown:
            raise ValueError(
                f"unknown catalogue member(s) {', '.join(unknown)}; expected {', '.join(sorted(names))}"
            )
        return cls(**parsed)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Catalogue:
        """Read a catalogue file (see :meth:`from_json`).

        Raises:
            ValueError: the file's content is not a catalogue.
            OSError: the file cannot be read.
        """
        with open(path, "rb") as file:
            return cls.from_json(file.read())


@attrs.frozen
class EmulatorConfig:
    """How the emulated tenant is set up.

    ``token_ttl`` is the access-token lifetime in seconds (fractions allowed, e.g. ``0.05`` in tests).
    ``seed`` makes TIDs and injected faults reproducible. ``keep_activities=False`` keeps only the
    counters and per-customer aggregates (for long benchmarks), so ``applied_activities()`` is empty.
    ``key_attribute`` is the API name of the space's customer-key attribute. ``catalogue`` lists the
    known proposition and activity-type codes (default: everything is accepted).
    ``delete_permission=False`` emulates credentials that may not delete (DELETE answers 403).
    ``clock_skew`` is how many seconds an activity timestamp may be ahead of the emulator's clock
    before it is refused as a future date (400 ``INVALID_DATE_TIME``).
    """

    site_key: str = "ONE-TESTTEST01-0001"
    client_id: str = "test-client"
    client_secret: str = attrs.field(default="test-secret", repr=False)
    token_ttl: float = attrs.field(default=3600.0, converter=float, validator=_positive)
    seed: int = 0
    faults: Faults = attrs.field(default=Faults(), validator=attrs.validators.instance_of(Faults))
    keep_activities: bool = True
    key_attribute: str = attrs.field(default="customerkey", validator=_api_name)
    catalogue: Catalogue = attrs.field(
        default=Catalogue(), validator=attrs.validators.instance_of(Catalogue)
    )
    delete_permission: bool = True
    clock_skew: float = attrs.field(
        default=DEFAULT_CLOCK_SKEW, converter=float, validator=_non_negative
    )


@attrs.define
class Counters:
    """What the emulator received, applied and injected. Mutated in place by the server.

    ``requests`` counts every API request (not token requests) as it arrives, before any fault;
    ``status_counts`` counts API responses actually sent, by status; a reset sends no response and
    is counted only in ``faults_injected`` (``reset_before``, ``reset_after``). ``max_rate``
    rejections are counted in ``faults_injected["max_rate"]`` and as 429s.
    ``activity_requests_applied`` counts activity requests answered 200 (some of their activities
    may have been rejected); ``rejected_activities`` counts activities listed in a 200's
    ``errors`` (unknown codes, and the ``reject`` fault, also counted in
    ``faults_injected["reject"]``); ``applied_activities`` counts the activities stored.
    """

    token_requests: int = 0
    tokens_issued: int = 0
    requests: int = 0
    activity_requests: int = 0
    structure_requests: int = 0
    delete_requests: int = 0
    unauthorized: int = 0
    applied_activities: int = 0
    activity_requests_applied: int = 0
    structures_served: int = 0
    deletes_applied: int = 0
    faults_injected: dict[str, int] = attrs.Factory(dict)
    status_counts: dict[int, int] = attrs.Factory(dict)
    rejected_activities: int = 0

    def as_dict(self) -> dict[str, object]:
        """Return a deep copy as plain data."""
        return attrs.asdict(self)
