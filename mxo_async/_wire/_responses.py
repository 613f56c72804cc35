"""Response parsing: lenient where WIRE.md is assumed, strict about shapes we rely on."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from .._errors import APIStatusError, AuthenticationError, ResponseFormatError, status_error
from .._models import ActivityResult, Erasure
from ._shapes import CONTROL, ERROR_EXCERPT, OAUTH_CODE, ErasureBody, TokenGrant, converter

T = TypeVar("T")


def _json(body: bytes, what: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ResponseFormatError(f"{what}: response body is not valid JSON") from None


def _object(body: bytes, what: str) -> dict[str, Any]:
    data = _json(body, what)
    if not isinstance(data, dict):
        raise ResponseFormatError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def parse_activity(body: bytes) -> ActivityResult:
    """``{"statusCode": 200, "tid": "..."}`` → :class:`ActivityResult`."""
    try:
        data = orjson.loads(body)  # _object() inlined: this runs for every activity request
    except orjson.JSONDecodeError:
        data = None
    if type(data) is not dict:
        data = _object(body, "activity")  # raises the precise ResponseFormatError
    tid = data.get("tid")
    if tid is not None and not isinstance(tid, str):
        raise ResponseFormatError(f"activity: 'tid' must be a string, got {type(tid).__name__}")
    return ActivityResult(tid=tid)


def parse_structure(body: bytes, into: type[T] | None = None) -> dict[str, Any] | T:
    """The Pull Structure's attributes (root node not included), optionally structured ``into``."""
    data = _object(body, "structure")
    if into is None:
        return data
    try:
        return converter.structure(data, into)
    except Exception as exc:  # cattrs raises a variety of errors: all mean "wrong shape"
        raise ResponseFormatError(
            f"structure: cannot structure response into {into.__name__}: {type(exc).__name__}"
        ) from exc


def parse_erasure(status: int, body: bytes) -> Erasure:
    """200 lists what is deleted; 404 means the customer is unknown (nothing left to delete)."""
    if status == 404:
        return Erasure(found=False)
    data = _object(body, "delete")
    try:
        parsed = converter.structure(data, ErasureBody)
    except Exception as exc:
        raise ResponseFormatError(
            f"delete: unexpected response shape: {type(exc).__name__}"
        ) from exc
    return Erasure(tids=parsed.tids, identifiers=parsed.identifiers, found=True)


def parse_token(status: int, body: bytes) -> TokenGrant:
    """Parse a 200 token response; 400/401/403 raise :class:`AuthenticationError`."""
    if status in (400, 401, 403):
        message = f"token endpoint refused the client credentials (HTTP {status})"
        code = _oauth_error_code(body)
        raise AuthenticationError(f"{message}: {code}" if code else message, status)
    data = _object(body, "token")
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise ResponseFormatError("token: 'access_token' missing or not a string")
    expires_in = data.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isascii() and expires_in.isdigit():
        expires_in = int(expires_in)
    if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = None
    token_type = data.get("token_type", "Bearer")
    return TokenGrant(token, float(expires_in) if expires_in is not None else None, str(token_type))


def _oauth_error_code(body: bytes) -> str | None:
    """The RFC 6749 ``error`` code only: a description could echo what was sent."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) and OAUTH_CODE.fullmatch(code) else None


def _error_message(body: bytes) -> str:
    """A short, printable excerpt of an error body: its message field if JSON, else its text."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        for field in ("errorMessage", "error_description", "message", "error"):
            value = data.get(field)
            if isinstance(value, str) and value:
                return _excerpt(value)
    return _excerpt(body.decode("utf-8", "replace"))


def _excerpt(text: str) -> str:
    text = CONTROL.sub(" ", text).strip()
    return text if len(text) <= ERROR_EXCERPT else text[:ERROR_EXCERPT] + "…"


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP-date; None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if seconds != seconds or seconds == float("inf"):  # NaN or infinite: not a usable hint
        return None
    return max(0.0, seconds)


def parse_error(
    status: int, headers: Mapping[str, str], body: bytes, now: datetime
) -> APIStatusError:
    """Turn a non-2xx response into the matching :class:`APIStatusError`."""
    retry_after = parse_retry_after(headers.get("Retry-After"), now)
    return status_error(status, _error_message(body), retry_after)
