"""What a response means: status, headers and body in, a result or an :class:`MXOError` out.

This is the one place that decides it (gidgethub's ``decipher_response``): one pure function per
endpoint, each with the signature ``(status, headers, body, now)``. Callers never look at a status
themselves; the sender (``_sending``) only reads the status of the error a function raised (to
retry, pause or refresh the token). Lenient where the contract is an interpretation, strict about
the shapes the client relies on.
"""

from __future__ import annotations

import email.utils
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from .._errors import (
    APIStatusError,
    AuthenticationError,
    NotFoundError,
    RejectedActivitiesError,
    ResponseFormatError,
    status_error,
)
from .._models import Activity, ActivityError, ActivityResult, Erasure, Structure
from ._shapes import CONTROL, ERROR_EXCERPT, OAUTH_CODE, ErasureBody, TokenGrant, converter

T = TypeVar("T")

logger = logging.getLogger("mxo_async")

CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
# errorCode values are upper-case words (the spec's enum); anything else is not kept, since a
# hostile or broken server could put anything there.
_ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_ENVELOPE = frozenset({"structureApiName", "tid", "structure", "error"})


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


# -- errors, all endpoints -------------------------------------------------------------------------


def decipher_error(
    status: int, headers: Mapping[str, str], body: bytes, now: datetime
) -> APIStatusError:
    """The :class:`APIStatusError` for a non-success answer, with ``errorCode`` as ``code``."""
    retry_after = parse_retry_after(headers.get("Retry-After"), now)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        return status_error(status, _error_message(data, body), retry_after, _error_code(data))
    return status_error(status, _excerpt(body.decode("utf-8", "replace")), retry_after)


def _error_code(data: Mapping[str, Any]) -> str | None:
    code = data.get("errorCode")
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None


def _error_message(data: Mapping[str, Any], body: bytes) -> str:
    """A short, printable excerpt of an error body: its message field, else its text."""
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


# -- send activity ---------------------------------------------------------------------------------


def decipher_activity(
    status: int, headers: Mapping[str, str], body: bytes, now: datetime
) -> ActivityResult:
    """200 ``{"tid", "errors"}`` → :class:`ActivityResult`; rejected activities raise.

    Raises:
        RejectedActivitiesError: ``errors`` lists activities MXO did not process.
        ResponseFormatError: a 200 without a readable ``tid`` (the activities were stored).
        APIStatusError: any other status.
    """
    if status != 200:
        raise decipher_error(status, headers, body, now)
    try:
        data = orjson.loads(body)  # _object() inlined: this runs for every activity request
    except orjson.JSONDecodeError:
        data = None
    if type(data) is not dict:
        data = _object(body, "activity")  # raises the precise ResponseFormatError
    tid = data.get("tid")
    if not isinstance(tid, str) or not tid:
        raise ResponseFormatError("activity: 'tid' missing or not a string")
    errors = data.get("errors")
    if not errors:
        if errors is None:
            # [I] the spec requires 'errors'; a server that leaves it out rejected nothing we
            # can name, so the answer is read as "all processed".
            logger.debug("activity: 200 without 'errors', read as none rejected")
        return ActivityResult(tid)
    if not isinstance(errors, list):
        raise ResponseFormatError(f"activity: 'errors' must be a list, got {type(errors).__name__}")
    result = ActivityResult(tid, tuple(_activity_error(item) for item in errors))
    raise RejectedActivitiesError(result)


def _activity_error(item: object) -> ActivityError:
    if not isinstance(item, dict):
        return ActivityError("GENERAL", "unreadable error entry", None)
    code = _error_code(item) or "GENERAL"
    message = item.get("errorMessage")
    text = _excerpt(message) if isinstance(message, str) else ""
    return ActivityError(code, text, _echoed_activity(item.get("activity")))


def _echoed_activity(echo: object) -> Activity | None:
    """The activity an error echoes, when it reads as one (else None: matched by position)."""
    if not isinstance(echo, dict):
        return None
    timestamp = echo.get("timestamp")
    try:
        when = datetime.fromisoformat(timestamp) if isinstance(timestamp, str) else None
        return Activity(
            echo.get("propositionCode"),  # type: ignore[arg-type]  # validated by Activity
            echo.get("activityTypeCode"),  # type: ignore[arg-type]
            echo.get("dynamicPropositionCode"),
            when,
        )
    except (ValueError, TypeError):  # ValidationError is a ValueError
        return None


def match_rejections(
    activities: Sequence[Activity], errors: Sequence[ActivityError]
) -> dict[int, ActivityError]:
    """Which activities of a request the ``errors`` of its answer name, by index.

    An error is matched to the first unmatched activity equal to its echo (codes, and the
    timestamp when both carry one); an error without a usable echo takes the first activity
    not yet matched, in request order ([I]: the spec does not say how errors are ordered).
    """
    matched: dict[int, ActivityError] = {}
    unplaced: list[ActivityError] = []
    for error in errors:
        index = _find_echo(activities, error.activity, matched)
        if index is None:
            unplaced.append(error)
        else:
            matched[index] = error
    for error in unplaced:
        for index in range(len(activities)):
            if index not in matched:
                matched[index] = error
                break
    return matched


def _find_echo(
    activities: Sequence[Activity], echo: Activity | None, matched: Mapping[int, object]
) -> int | None:
    if echo is None:
        return None
    for index, activity in enumerate(activities):
        if (
            index not in matched
            and activity.proposition == echo.proposition
            and activity.activity_type == echo.activity_type
            and activity.dynamic_proposition == echo.dynamic_proposition
            and (
                echo.timestamp is None
                or activity.timestamp is None
                or activity.timestamp == echo.timestamp
            )
        ):
            return index
    return None


# -- evaluate a structure --------------------------------------------------------------------------


def decipher_structure(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    name: str,
    into: type[T] | None = None,
) -> Structure[Any]:
    """200 envelope ``{structureApiName, tid, structure, error}`` → :class:`Structure`.

    Raises:
        APIStatusError: a 200 whose envelope carries an ``error`` and no ``structure`` (with the
            error's code), or any other status (404: unknown structure).
        ResponseFormatError: the body or ``structure`` is not an object, or not of ``into``'s shape.
    """
    if status != 200:
        raise decipher_error(status, headers, body, now)
    data = _object(body, "structure")
    if _ENVELOPE.isdisjoint(data):
        # [I] a tolerant reader: a body with no envelope member is read as bare attributes.
        logger.debug("structure: answer without an envelope, read as bare attributes")
        attributes: Any = data
        tid = None
    else:
        error = data.get("error")
        if "structure" not in data and isinstance(error, dict):
            raise status_error(200, _error_message(error, b""), None, _error_code(error))
        attributes = data.get("structure", {})
        if not isinstance(attributes, dict):
            raise ResponseFormatError(
                f"structure: 'structure' must be an object, got {type(attributes).__name__}"
            )
        tid = data.get("tid")
        if tid is not None and not isinstance(tid, str):
            raise ResponseFormatError(
                f"structure: 'tid' must be a string, got {type(tid).__name__}"
            )
    returned = data.get("structureApiName")
    structure_name = returned if isinstance(returned, str) and returned else name
    if into is None:
        return Structure(structure_name, tid, attributes)
    try:
        return Structure(structure_name, tid, converter.structure(attributes, into))
    except Exception as exc:  # cattrs raises a variety of errors: all mean "wrong shape"
        raise ResponseFormatError(
            f"structure: cannot structure response into {into.__name__}: {type(exc).__name__}"
        ) from exc


# -- delete a customer -----------------------------------------------------------------------------


def decipher_erasure(
    status: int, headers: Mapping[str, str], body: bytes, now: datetime
) -> Erasure:
    """200 lists what is deleted; a 404 that says ``CUSTOMER_NOT_FOUND`` means nothing is left.

    Raises:
        NotFoundError: any other 404 (a wrong site key or path must never read as "erased").
        ForbiddenError: 403, the credentials may not delete.
        APIStatusError: any other non-success status.
    """
    if status == 200:
        data = _object(body, "delete")
        try:
            parsed = converter.structure(data, ErasureBody)
        except Exception as exc:
            raise ResponseFormatError(
                f"delete: unexpected response shape: {type(exc).__name__}"
            ) from exc
        return Erasure(tids=parsed.tids, identifiers=parsed.identifiers, found=True)
    error = decipher_error(status, headers, body, now)
    if isinstance(error, NotFoundError) and error.code == CUSTOMER_NOT_FOUND:
        return Erasure(found=False)
    raise error


# -- token -----------------------------------------------------------------------------------------


def decipher_token(
    status: int, headers: Mapping[str, str], body: bytes, now: datetime
) -> TokenGrant:
    """Parse a 200 token response; 400/401/403 raise :class:`AuthenticationError`.

    The token must be an RFC 6750 ``b64token`` (what an ``Authorization: Bearer`` header can
    carry) of at most 8,000 characters (a longer one does not fit the 8 KiB header line most
    servers accept): a token with a CR, LF, NUL or space would be cached and then fail every
    request before it is sent, so no 401 would ever replace it. ``expires_in`` (a number or a
    string of at most 12 digits) is clamped to [1 s, 1 day]; one that is no usable number is
    ignored (the client's default lifetime applies; the 401 path replaces a token that dies
    sooner).

    Raises:
        ResponseFormatError: a 200 without a usable ``access_token``.
    """
    if status in (400, 401, 403):
        message = f"token endpoint refused the client credentials (HTTP {status})"
        code = _oauth_error_code(body)
        raise AuthenticationError(f"{message}: {code}" if code else message, status)
    if status != 200:
        raise decipher_error(status, headers, body, now)
    data = _object(body, "token")
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise ResponseFormatError("token: 'access_token' missing or not a string")
    if len(token) > 8000 or not re.fullmatch(r"[A-Za-z0-9\-._~+/]+=*", token):
        # Never quoted: it is a credential, however malformed.
        raise ResponseFormatError("token: 'access_token' is not an RFC 6750 bearer token")
    expires_in = data.get("expires_in")
    if isinstance(expires_in, str):
        # int() of 5,000 digits raises ValueError; float() of 400 digits, OverflowError.
        ok = expires_in.isascii() and expires_in.isdigit() and len(expires_in) <= 12
        expires_in = int(expires_in) if ok else None
    lifetime = None
    # bool is an int; orjson gives only finite floats and 64-bit ints.
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        lifetime = min(max(float(expires_in), 1.0), 86400.0)
    token_type = data.get("token_type")
    if not isinstance(token_type, str) or not token_type:
        token_type = "Bearer"  # noqa: S105 - a scheme name, not a secret
    return TokenGrant(token, lifetime, token_type)


def _oauth_error_code(body: bytes) -> str | None:
    """The RFC 6749 ``error`` code only: a description could echo what was sent."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) and OAUTH_CODE.fullmatch(code) else None


__all__ = [
    "CUSTOMER_NOT_FOUND",
    "decipher_activity",
    "decipher_erasure",
    "decipher_error",
    "decipher_structure",
    "decipher_token",
    "match_rejections",
    "parse_retry_after",
]
