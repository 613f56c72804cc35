"""Plain configuration values shared by the transport, the throttle and the client."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._errors import ValidationError

__all__ = ["Limits", "Timeouts", "check_base_url", "check_text", "is_loopback"]


def _positive_or_none(
    instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is not None and not value > 0:
        raise ValidationError(
            f"{type(instance).__name__}.{attribute.name}", f"must be > 0, got {value!r}"
        )


@attrs.frozen
class Timeouts:
    """Per-attempt timeouts (seconds) and an overall per-call deadline covering all retries.

    ``connect`` bounds opening a new connection; ``total`` bounds each attempt from sending to
    the whole response (a stalled server included); ``read``, off by default, additionally bounds
    each silence while reading a response (aiohttp re-arms a timer on every read, which costs
    CPU on every request); ``deadline`` bounds the whole call, retries and backoff included.
    """

    connect: float | None = attrs.field(default=5.0, validator=_positive_or_none)
    read: float | None = attrs.field(default=None, validator=_positive_or_none)
    total: float | None = attrs.field(default=30.0, validator=_positive_or_none)
    deadline: float | None = attrs.field(default=120.0, validator=_positive_or_none)


@attrs.frozen
class Limits:
    """Connection pool size and the shared throttle's settings.

    ``rate`` caps requests per second (token bucket holding ``burst`` tokens, default ``rate``);
    ``adaptive`` enables AIMD concurrency that halves on 429/503 and grows back slowly, between
    ``min_concurrency`` and ``max_connections``.
    """

    max_connections: int = 100
    rate: float | None = attrs.field(default=None, validator=_positive_or_none)
    burst: float | None = attrs.field(default=None, validator=_positive_or_none)
    adaptive: bool = True
    min_concurrency: int = 1

    def __attrs_post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValidationError(
                "Limits.max_connections", f"must be >= 1, got {self.max_connections}"
            )
        if not 1 <= self.min_concurrency <= self.max_connections:
            raise ValidationError(
                "Limits.min_concurrency",
                f"must be between 1 and max_connections, got {self.min_concurrency}",
            )


def check_text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty string")
    return value


# Unicode categories never valid in a URL we send: controls (CR, LF, NUL...), invisible format
# characters (bidi overrides, zero-width joiners) and every kind of space or line separator.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_HOSTNAME = re.compile(r"[\w.-]+")  # letters (IDN included), digits, '.', '-', '_'
# RFC 3986 path characters: the wire module appends to the path and sends it as it is.
_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:/]|%[0-9A-Fa-f]{2})*")


def check_base_url(base_url: object, allow_insecure_http: bool, field: str = "base_url") -> str:
    """``base_url`` (or ``token_url``) checked and without its trailing slash.

    Refused: anything but an absolute http(s) URL of a plain host name or IP address, a query or
    fragment, whitespace and control characters anywhere (a CR/LF would split a request line),
    and any ``@``: ``user:password@`` would put a password in ``repr(client)`` and in logs, so
    the message never quotes such a URL.
    """
    text = check_text(field, base_url)
    if "@" in text:
        raise ValidationError(
            field,
            "must not contain '@' (no user:password@: credentials go in client_id/client_secret)",
        )
    if any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in text) or "\\" in text:
        raise ValidationError(
            field, f"must not contain spaces, control characters or backslashes, got {text!r}"
        )
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port outside 0-65535
    except ValueError as exc:
        raise ValidationError(field, f"is not a valid URL ({exc}), got {text!r}") from None
    hostname = parts.hostname
    if parts.scheme not in ("https", "http") or not hostname:
        raise ValidationError(
            field, f"must be an http(s) URL such as https://eu2.thunderhead.com, got {text!r}"
        )
    if not _HOSTNAME.fullmatch(hostname) and not _is_ip(hostname):
        raise ValidationError(field, f"has an invalid host name, got {text!r}")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValidationError(field, "must not have a query string or fragment")
    if not _PATH.fullmatch(parts.path):
        raise ValidationError(field, f"has characters a URL path cannot hold, got {text!r}")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(hostname):
        raise ValidationError(
            field, "plain http is only allowed for loopback hosts (pass allow_insecure_http=True)"
        )
    return text.rstrip("/")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
