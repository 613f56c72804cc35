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
    converter,
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

    def __attrs_post_init__(self) -> None:
        base = self.base_url.rstrip("/")
        root = (
            f"{base}/one/oauth2/rt/api/{quote(self.api_version, safe='')}"
            f"/customer/{quote(self.site_key, safe='')}"
        )
        object.__setattr__(self, "root", root)
        if not self.token_url:
            object.__setattr__(self, "token_url", base + TOKEN_PATH)
        headers = dict(JSON_HEADERS)
        headers["User-Agent"] = self.user_agent
        object.__setattr__(self, "json_headers", headers)


def _context(customer: Customer, touchpoint: str, properties: Mapping[str, str]) -> CustomerContext:
    identifiers = (
        (WireIdentifier(CUSTOMER_KEY_API_NAME, customer.key),) if customer.key is not None else None
    )
    props = tuple(WireProperty(n, v) for n, v in properties.items()) if properties else None
    return CustomerContext(
        identifiers=identifiers, properties=props, base_touchpoint_uri=touchpoint
    )


def _tid_query(customer: Customer) -> str:
    return "?tid=" + quote(customer.tid, safe="") if customer.tid is not None else ""


def _wire_activity(activity: Activity) -> WireActivity:
    return WireActivity(
        proposition_code=activity.proposition,
        dynamic_proposition_code=activity.dynamic_proposition,
        activity_type_code=activity.activity_type,
        timestamp=activity.timestamp,
    )


def build_activity(endpoints: Endpoints, request: ActivityRequest) -> WireRequest:
    """``POST {root}/activity`` for one customer's activities."""
    body = ActivityBody(
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
    body = StructureBody(
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
