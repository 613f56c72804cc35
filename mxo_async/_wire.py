"""The only module that knows WIRE.md: build requests, parse responses.

Everything here is pure: no awaits, no sleeps, no clock reads (callers pass ``now`` where an
HTTP-date must be interpreted). Assumed parts of the contract ([A] in WIRE.md) live here and nowhere
else, so correcting one against a real tenant is a one-file change.
"""

from __future__ import annotations

import base64
import email.utils
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote, quote_plus, urlencode

import attrs
import orjson
from cattrs.gen import make_dict_structure_fn, override
from cattrs.preconf.orjson import OrjsonConverter, make_converter

from ._errors import (
    APIStatusError,
    AuthenticationError,
    ResponseFormatError,
    status_error,
)
from ._models import Activity, ActivityRequest, ActivityResult, Customer, Erasure, Identifier

__all__ = [
    "CUSTOMER_KEY_API_NAME",
    "Endpoints",
    "TokenGrant",
    "WireRequest",
    "build_activity",
    "build_delete",
    "build_structure",
    "build_token_request",
    "converter",
    "format_timestamp",
    "parse_activity",
    "parse_erasure",
    "parse_error",
    "parse_retry_after",
    "parse_structure",
    "parse_token",
]

T = TypeVar("T")

DEFAULT_API_VERSION: Final = "3.1.0"
CUSTOMER_KEY_API_NAME: Final = "customerkey"  # [A] the apiName MXO uses for the customer key
TOKEN_PATH: Final = "/one/oauth2token"  # noqa: S105 - a path, not a secret
_ERROR_EXCERPT: Final = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_JSON_HEADERS: Final = (("Accept", "application/json"), ("Content-Type", "application/json"))


@attrs.frozen
class WireRequest:
    """An HTTP request ready to send (the ``Authorization`` of API calls is added at send time)."""

    method: str
    url: str = attrs.field(repr=False)  # the query string can hold a customer key
    headers: Mapping[str, str] = attrs.field(repr=False)  # the token request carries the secret
    body: bytes | None = attrs.field(default=None, repr=False)
    path: str = ""  # the URL without query, safe to log


@attrs.frozen
class TokenGrant:
    """A parsed token response. The token never appears in a repr."""

    access_token: str = attrs.field(repr=False)
    expires_in: float | None
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret


# -- wire shapes -----------------------------------------------------------------------------------
# Field order is the order WIRE.md shows; names are snake_case here and camelCase on the wire.


@attrs.frozen
class _WireIdentifier:
    api_name: str
    value: str


@attrs.frozen
class _WireProperty:
    name: str
    value: str


@attrs.frozen(kw_only=True)
class _CustomerContext:
    identifiers: tuple[_WireIdentifier, ...] | None = None
    properties: tuple[_WireProperty, ...] | None = None
    base_touchpoint_uri: str


@attrs.frozen(kw_only=True)
class _WireActivity:
    proposition_code: str
    dynamic_proposition_code: str | None = None
    activity_type_code: str
    timestamp: datetime | None = None


@attrs.frozen(kw_only=True)
class _ActivityBody:
    customer_context: _CustomerContext
    activities: tuple[_WireActivity, ...]


@attrs.frozen(kw_only=True)
class _StructureBody:
    customer_context: _CustomerContext
    structure_api_name: str


@attrs.frozen
class _ErasureBody:
    tids: tuple[str, ...] = ()
    identifiers: tuple[Identifier, ...] = ()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``; milliseconds only when non-zero (sub-millisecond is dropped)."""
    utc = value.astimezone(UTC)
    text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    millis = utc.microsecond // 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


_WIRE_SHAPES: Final = (
    _WireIdentifier,
    _WireProperty,
    _CustomerContext,
    _WireActivity,
    _ActivityBody,
    _StructureBody,
)
_PLAIN: Final = (str, int, float, bool)


def _camel_case_hook(conv: OrjsonConverter, cls: type[Any]) -> Any:
    """Unstructure ``cls`` in field order with camelCase keys, omitting ``None`` fields.

    cattrs' generated functions move omittable fields to the end; WIRE.md's samples show a fixed
    order, and we keep it so requests match them byte for byte.
    """
    names = tuple((a.name, _camel(a.name)) for a in attrs.fields(cls))
    unstructure = conv.unstructure

    def hook(instance: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for attr, key in names:
            value = getattr(instance, attr)
            if value is None:
                continue
            if type(value) in _PLAIN:
                out[key] = value
            elif type(value) is tuple:
                out[key] = [unstructure(item) for item in value]
            else:
                out[key] = unstructure(value)
        return out

    return hook


def make_wire_converter() -> OrjsonConverter:
    """Build the converter: camelCase names, ``None`` omitted, timestamps as RFC 3339 ``Z``."""
    conv = make_converter()
    conv.register_unstructure_hook(datetime, format_timestamp)
    for cls in _WIRE_SHAPES:
        conv.register_unstructure_hook(cls, _camel_case_hook(conv, cls))
    conv.register_structure_hook(
        Identifier,
        make_dict_structure_fn(Identifier, conv, api_name=override(rename="apiName")),
    )
    return conv


converter: Final = make_wire_converter()


# -- requests --------------------------------------------------------------------------------------


@attrs.frozen
class Endpoints:
    """URLs of one tenant and site, computed once per client."""

    base_url: str
    site_key: str
    api_version: str = DEFAULT_API_VERSION
    token_url: str = ""
    root: str = attrs.field(init=False)
    user_agent: str = "mxo-async"
    json_headers: Mapping[str, str] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        base = self.base_url.rstrip("/")
        root = (
            f"{base}/one/oauth2/rt/api/{quote(self.api_version, safe='')}"
            f"/customer/{quote(self.site_key, safe='')}"
        )
        object.__setattr__(self, "root", root)
        if not self.token_url:
            object.__setattr__(self, "token_url", base + TOKEN_PATH)
        headers = dict(_JSON_HEADERS)
        headers["User-Agent"] = self.user_agent
        object.__setattr__(self, "json_headers", headers)


def _context(
    customer: Customer, touchpoint: str, properties: Mapping[str, str]
) -> _CustomerContext:
    identifiers = (
        (_WireIdentifier(CUSTOMER_KEY_API_NAME, customer.key),)
        if customer.key is not None
        else None
    )
    props = tuple(_WireProperty(n, v) for n, v in properties.items()) if properties else None
    return _CustomerContext(
        identifiers=identifiers, properties=props, base_touchpoint_uri=touchpoint
    )


def _tid_query(customer: Customer) -> str:
    return "?tid=" + quote(customer.tid, safe="") if customer.tid is not None else ""


def _wire_activity(activity: Activity) -> _WireActivity:
    return _WireActivity(
        proposition_code=activity.proposition,
        dynamic_proposition_code=activity.dynamic_proposition,
        activity_type_code=activity.activity_type,
        timestamp=activity.timestamp,
    )


def build_activity(endpoints: Endpoints, request: ActivityRequest) -> WireRequest:
    """``POST {root}/activity`` for one customer's activities."""
    body = _ActivityBody(
        customer_context=_context(request.customer, request.touchpoint, request.properties),
        activities=tuple(_wire_activity(a) for a in request.activities),
    )
    path = endpoints.root + "/activity"
    return WireRequest(
        "POST",
        path + _tid_query(request.customer),
        endpoints.json_headers,
        orjson.dumps(converter.unstructure(body)),
        path,
    )


def build_structure(
    endpoints: Endpoints,
    customer: Customer,
    touchpoint: str,
    structure: str,
    properties: Mapping[str, str],
) -> WireRequest:
    """``POST {root}/structure`` asking for one Pull Structure of one customer."""
    body = _StructureBody(
        customer_context=_context(customer, touchpoint, properties),
        structure_api_name=structure,
    )
    path = endpoints.root + "/structure"
    return WireRequest(
        "POST",
        path + _tid_query(customer),
        endpoints.json_headers,
        orjson.dumps(converter.unstructure(body)),
        path,
    )


def build_delete(endpoints: Endpoints, customer: Customer) -> WireRequest:
    """``DELETE {root}/?customerKey=...&tid=...`` erasing one customer."""
    query: list[tuple[str, str]] = []
    if customer.key is not None:
        query.append(("customerKey", customer.key))
    if customer.tid is not None:
        query.append(("tid", customer.tid))
    path = endpoints.root + "/"
    url = path + "?" + urlencode(query, quote_via=quote)
    headers = {"Accept": "application/json", "User-Agent": endpoints.user_agent}
    return WireRequest("DELETE", url, headers, None, path)


def build_token_request(token_url: str, client_id: str, client_secret: str) -> WireRequest:
    """The client-credentials grant, with RFC 6749 §2.3.1 form-encoded Basic credentials."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    headers = {
        "Authorization": "Basic " + base64.b64encode(pair).decode("ascii"),
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    path = token_url.split("?", 1)[0]
    return WireRequest("POST", token_url, headers, b"grant_type=client_credentials", path)


# -- responses -------------------------------------------------------------------------------------


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
    data = _object(body, "activity")
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
        parsed = converter.structure(data, _ErasureBody)
    except Exception as exc:
        raise ResponseFormatError(
            f"delete: unexpected response shape: {type(exc).__name__}"
        ) from exc
    return Erasure(tids=parsed.tids, identifiers=parsed.identifiers, found=True)


def parse_token(status: int, body: bytes) -> TokenGrant:
    """Parse a 200 token response; 400/401/403 raise :class:`AuthenticationError`."""
    if status in (400, 401, 403):
        message = "token endpoint refused the client credentials"
        code = _error_message(body)
        raise AuthenticationError(f"{message} ({code})" if code else message, status)
    data = _object(body, "token")
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise ResponseFormatError("token: 'access_token' missing or not a string")
    expires_in = data.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = None
    token_type = data.get("token_type", "Bearer")
    return TokenGrant(token, float(expires_in) if expires_in is not None else None, str(token_type))


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
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= _ERROR_EXCERPT else text[:_ERROR_EXCERPT] + "…"


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
