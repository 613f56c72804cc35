"""Emulator configuration and the counters it keeps."""

from __future__ import annotations

from typing import Any

import attrs

from ._faults import Faults

__all__ = ["Counters", "EmulatorConfig"]


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"EmulatorConfig.{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class EmulatorConfig:
    """How the emulated tenant is set up.

    ``token_ttl`` is the access-token lifetime in seconds (fractions allowed, e.g. ``0.05`` in tests).
    ``seed`` makes TIDs and injected faults reproducible. ``keep_activities=False`` keeps only the
    counters and per-customer aggregates (for long benchmarks), so ``applied_activities()`` is empty.
    """

    site_key: str = "ONE-TESTTEST01-0001"
    client_id: str = "test-client"
    client_secret: str = attrs.field(default="test-secret", repr=False)
    token_ttl: float = attrs.field(default=3600.0, converter=float, validator=_positive)
    seed: int = 0
    faults: Faults = attrs.field(default=Faults(), validator=attrs.validators.instance_of(Faults))
    keep_activities: bool = True


@attrs.define
class Counters:
    """What the emulator received, applied and injected. Mutated in place by the server.

    ``requests`` counts every API request (not token requests) as it arrives, before any fault;
    ``status_counts`` counts API responses actually sent, by status; a reset sends no response and
    is counted only in ``faults_injected`` (``reset_before``, ``reset_after``). ``max_rate``
    rejections are counted in ``faults_injected["max_rate"]`` and as 429s.
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

    def as_dict(self) -> dict[str, object]:
        """Return a deep copy as plain data."""
        return attrs.asdict(self)
