"""Fault injection settings for the emulator, and the seeded dice that pick a fault per request.

A :class:`Faults` value is immutable; the emulator swaps the whole value when it is reconfigured at
runtime. Probabilities of the API faults are exclusive outcomes of one draw per API request, so their
sum must not exceed 1; the token-endpoint faults and ``reject`` (one draw per activity) are drawn
separately.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any

import attrs

__all__ = [
    "AFTER_APPLY",
    "API_FAULTS",
    "TOKEN_FAULTS",
    "FaultDice",
    "Faults",
    "RateCap",
    "format_retry_after",
]

# API fault kinds in draw order. Kinds in AFTER_APPLY happen once the request has been applied.
API_FAULTS = (
    "status_429",
    "status_429_bare",
    "status_500",
    "status_502",
    "status_503",
    "status_504",
    "html_error",
    "reset_before",
    "reset_after",
    "malformed_json",
    "oversized",
    "slow_body",
)
AFTER_APPLY = frozenset({"reset_after", "malformed_json", "oversized", "slow_body"})
TOKEN_FAULTS = ("token_429", "token_500", "token_503", "token_reset")

# Short spec keys for the status faults; every field name is accepted as a key too.
_ALIASES = {
    "429": "status_429",
    "429_bare": "status_429_bare",
    "500": "status_500",
    "502": "status_502",
    "503": "status_503",
    "504": "status_504",
}
_REVERSE_ALIASES = {field: alias for alias, field in _ALIASES.items()}


def _probability(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"Faults.{attribute.name} must be a probability in [0, 1], got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0.0 or math.isinf(value):
        raise ValueError(f"Faults.{attribute.name} must be a finite number >= 0, got {value!r}")


def _positive_or_none(
    instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is not None and (not value > 0.0 or math.isinf(value)):
        raise ValueError(f"Faults.{attribute.name} must be > 0 or None, got {value!r}")


def _p() -> Any:
    return attrs.field(default=0.0, converter=float, validator=_probability)


@attrs.frozen
class Faults:
    """What goes wrong, and how often. The default injects nothing.

    API faults (probability per API request, one draw decides at most one of them):

    - ``status_429``: 429 with ``Retry-After: <retry_after>``; ``status_429_bare``: 429 without it.
    - ``status_500``, ``status_502``, ``status_504``: that status with a JSON error body;
      ``status_503``: 503 with ``Retry-After``. None of these apply the request.
    - ``html_error``: 502 with an HTML body (a proxy's error page), not applied.
    - ``reset_before``: the connection is reset before the request is applied (no response).
    - ``reset_after``: the request is applied, then the connection is reset (no response).
    - ``malformed_json``: applied, then 200 with a truncated JSON body.
    - ``oversized``: applied, then 200 with a valid JSON body padded to ``oversized_bytes``.
    - ``slow_body``: applied, then 200 whose body is sent in ``slow_body_chunks`` chunks with
      ``slow_body_delay`` seconds between them.

    Other knobs: ``latency`` seconds added before every API request is handled; ``max_rate``
    requests/s admitted over a sliding one-second window, above which the answer is 429 *without*
    ``Retry-After``; ``retry_after`` seconds sent in ``Retry-After`` (a real server sends whole
    seconds; a fraction such as ``0.05`` is sent as ``"0.05"`` so tests stay fast).

    Token endpoint faults (probability per token request, drawn separately): ``token_429``
    (with ``Retry-After``), ``token_500``, ``token_503`` (with ``Retry-After``), ``token_reset``.

    Activity fault (probability per activity of a request the emulator processes, drawn
    separately): ``reject``, the activity is not stored and the 200 lists it in ``errors`` with
    errorCode ``GENERAL``, as a tenant does with an activity it could not process.
    """

    status_429: float = _p()
    status_429_bare: float = _p()
    status_500: float = _p()
    status_502: float = _p()
    status_503: float = _p()
    status_504: float = _p()
    html_error: float = _p()
    reset_before: float = _p()
    reset_after: float = _p()
    malformed_json: float = _p()
    oversized: float = _p()
    slow_body: float = _p()
    token_429: float = _p()
    token_500: float = _p()
    token_503: float = _p()
    token_reset: float = _p()
    reject: float = _p()
    latency: float = attrs.field(default=0.0, converter=float, validator=_non_negative)
    retry_after: float = attrs.field(default=1.0, converter=float, validator=_non_negative)
    max_rate: float | None = attrs.field(default=None, validator=_positive_or_none)
    oversized_bytes: int = attrs.field(default=4_000_000, converter=int, validator=_non_negative)
    slow_body_chunks: int = attrs.field(default=5, converter=int, validator=_non_negative)
    slow_body_delay: float = attrs.field(default=0.2, converter=float, validator=_non_negative)
    # Derived once, read on every request: whether a draw is needed at all.
    api_active: bool = attrs.field(init=False, repr=False, eq=False)
    token_active: bool = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        for group in (API_FAULTS, TOKEN_FAULTS):
            total = sum(getattr(self, name) for name in group)
            if total > 1.0 + 1e-9:
                raise ValueError(f"fault probabilities {', '.join(group)} sum to {total:g} > 1")
        object.__setattr__(self, "api_active", any(getattr(self, n) for n in API_FAULTS))
        object.__setattr__(self, "token_active", any(getattr(self, n) for n in TOKEN_FAULTS))

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """Build faults from a compact spec such as ``"429=0.05,503=0.02,latency=0.005"``.

        Keys are field names, or the short forms ``429``, ``429_bare``, ``500``, ``502``, ``503``
        and ``504``; ``max_rate=none`` clears the cap. An empty spec means no faults.

        Raises:
            ValueError: an unknown key, a malformed item or an out-of-range value.
        """
        names = {field.name for field in attrs.fields(cls) if field.init}
        values: dict[str, Any] = {}
        for item in spec.replace(";", ",").split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, raw = item.partition("=")
            key, raw = key.strip(), raw.strip()
            name = _ALIASES.get(key, key)
            if not sep or name not in names:
                raise ValueError(
                    f"bad fault spec item {item!r}: expected KEY=VALUE with a known KEY"
                )
            if name == "max_rate" and raw.lower() in {"", "none", "off"}:
                values[name] = None
                continue
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"bad fault spec item {item!r}: {raw!r} is not a number") from None
        return cls(**values)

    def to_spec(self) -> str:
        """Return the compact spec of the non-default settings (``Faults.parse`` reads it back)."""
        default = Faults()
        items = []
        for field in attrs.fields(Faults):
            if not field.init:
                continue
            value = getattr(self, field.name)
            if value != getattr(default, field.name):
                items.append(f"{_REVERSE_ALIASES.get(field.name, field.name)}={value:g}")
        return ",".join(items)


class FaultDice:
    """One seeded draw per request picks at most one fault kind (deterministic for a given order)."""

    def __init__(self, seed: int) -> None:
        self._api = random.Random(f"{seed}:api-faults")  # noqa: S311 - reproducible test faults
        self._token = random.Random(f"{seed}:token-faults")  # noqa: S311
        # Its own stream: rejecting activities leaves the per-request draws where they were.
        self._reject = random.Random(f"{seed}:reject")  # noqa: S311

    def api(self, faults: Faults) -> str | None:
        """Return the API fault kind to inject for this request, or ``None``."""
        if not faults.api_active:
            return None
        return _pick(self._api.random(), faults, API_FAULTS)

    def token(self, faults: Faults) -> str | None:
        """Return the token-endpoint fault kind to inject for this request, or ``None``."""
        if not faults.token_active:
            return None
        return _pick(self._token.random(), faults, TOKEN_FAULTS)

    def reject(self, faults: Faults) -> bool:
        """Whether to reject this activity (the ``reject`` fault)."""
        return self._reject.random() < faults.reject if faults.reject else False


def _pick(draw: float, faults: Faults, kinds: tuple[str, ...]) -> str | None:
    cumulative = 0.0
    for kind in kinds:
        cumulative += getattr(faults, kind)
        if draw < cumulative:
            return kind
    return None


class RateCap:
    """Sliding one-second window of admitted requests."""

    def __init__(self) -> None:
        self._admitted: deque[float] = deque()

    def admit(self, now: float, max_rate: float) -> bool:
        """Record and admit a request at ``now`` unless ``max_rate`` were admitted in the last second."""
        window = self._admitted
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= max_rate:
            return False
        window.append(now)
        return True


def format_retry_after(seconds: float) -> str:
    """Render ``Retry-After`` delta-seconds: whole seconds as an integer, a fraction as a decimal."""
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{seconds:g}"
