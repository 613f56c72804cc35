"""Request building: URLs, headers and bodies exactly as WIRE.md specifies."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import quote, quote_plus, urlencode

import attrs
import orjson

from .._models import Activity, ActivityRequest, Customer
from ._shapes import (
    CUSTOMER_KEY_API_NAME,
    DEFAULT_API_VERSION,
    JSON_HEADERS,
    TOKEN_PATH,
    ActivityBody,
    CustomerContext,
    StructureBody,
    WireActivity,
    WireIdentifier,
    WireProperty,
    WireRequest,
    format_timestamp,
    wire_keys,
)


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
    accept_headers: Mapping[str, str] = attrs.field(init=False, repr=False)  # bodiless requests
    activity_path: str = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        base = self.base_url.rstrip("/")
        root = (
            f"{base}/one/oauth2/rt/api/{quote(self.api_version, safe='')}"
            f"/customer/{quote(self.site_key, safe='')}"
        )
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "activity_path", root + "/activity")
        if not self.token_url:
            object.__setattr__(self, "token_url", base + TOKEN_PATH)
        headers = dict(JSON_HEADERS)
        headers["User-Agent"] = self.user_agent
        object.__setattr__(self, "json_headers", headers)
        # One dict per client, like json_headers: the executor caches the Authorization-bearing
        # copy of each header dict it sees, keyed by identity.
        object.__setattr__(
            self, "accept_headers", {"Accept": "application/json", "User-Agent": self.user_agent}
        )


# Wire names, unpacked from the shapes in ``_shapes`` (their camelCase field names, in field order).
# The builders below write dicts directly (no intermediate attrs objects, no converter dispatch);
# unpacking pins each name to its field, and test_wire checks the bytes against WIRE.md.
_API_NAME, _VALUE = wire_keys(WireIdentifier)
_NAME, _PROPERTY_VALUE = wire_keys(WireProperty)
_IDENTIFIERS, _PROPERTIES, _BASE_TOUCHPOINT_URI = wire_keys(CustomerContext)
_PROPOSITION, _DYNAMIC_PROPOSITION, _ACTIVITY_TYPE, _TIMESTAMP = wire_keys(WireActivity)
_CUSTOMER_CONTEXT, _ACTIVITIES = wire_keys(ActivityBody)
_STRUCTURE_CONTEXT, _STRUCTURE_API_NAME = wire_keys(StructureBody)


def _context(
    customer: Customer, touchpoint: str, properties: Mapping[str, str]
) -> dict[str, object]:
    """``customerContext``: identifiers only with a key, properties omitted when empty."""
    context: dict[str, object] = {}
    key = customer.key
    if key is not None:
        context[_IDENTIFIERS] = [{_API_NAME: CUSTOMER_KEY_API_NAME, _VALUE: key}]
    if properties:
        context[_PROPERTIES] = [{_NAME: n, _PROPERTY_VALUE: v} for n, v in properties.items()]
    context[_BASE_TOUCHPOINT_URI] = touchpoint
    return context


def _tid_query(customer: Customer) -> str:
    return "?tid=" + quote(customer.tid, safe="") if customer.tid is not None else ""


def _activity(activity: Activity) -> dict[str, str]:
    """One activity; optional fields are omitted, not sent as null."""
    wire = {_PROPOSITION: activity.proposition}
    if activity.dynamic_proposition is not None:
        wire[_DYNAMIC_PROPOSITION] = activity.dynamic_proposition
    wire[_ACTIVITY_TYPE] = activity.activity_type
    if activity.timestamp is not None:
        wire[_TIMESTAMP] = format_timestamp(activity.timestamp)
    return wire


def build_activity(endpoints: Endpoints, request: ActivityRequest) -> WireRequest:
    """``POST {root}/activity`` for one customer's activities."""
    customer = request.customer
    body = {
        _CUSTOMER_CONTEXT: _context(customer, request.touchpoint, request.properties),
        _ACTIVITIES: [_activity(a) for a in request.activities],
    }
    path = endpoints.activity_path
    return WireRequest(
        "POST",
        path if customer.tid is None else path + _tid_query(customer),
        endpoints.json_headers,
        orjson.dumps(body),
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
    body = {
        _STRUCTURE_CONTEXT: _context(customer, touchpoint, properties),
        _STRUCTURE_API_NAME: structure,
    }
    path = endpoints.root + "/structure"
    return WireRequest(
        "POST", path + _tid_query(customer), endpoints.json_headers, orjson.dumps(body), path
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
    return WireRequest("DELETE", url, endpoints.accept_headers, None, path)


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
