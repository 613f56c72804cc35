"""Request building: URLs, headers and bodies exactly as the Customer API 3.1.0 specifies.

No request carries a query string: the TID and the identifiers travel in the JSON body, the
DELETE's too.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import quote, quote_plus

import attrs
import orjson

from .._errors import ValidationError
from .._models import Activity, ActivityRequest, Customer, Device
from ._shapes import (
    CUSTOMER_KEY_API_NAME,
    DEFAULT_API_VERSION,
    JSON_HEADERS,
    TOKEN_PATH,
    ActivityBody,
    CustomerContext,
    DeleteBody,
    StructureBody,
    WireActivity,
    WireDevice,
    WireIdentifier,
    WireProperty,
    WireRequest,
    format_timestamp,
    wire_keys,
)


@attrs.frozen
class Endpoints:
    """URLs and fixed headers of one tenant and site, computed once per client."""

    base_url: str
    site_key: str
    api_version: str = DEFAULT_API_VERSION
    token_url: str = ""
    user_agent: str = "mxo-async"
    customer_key_attribute: str = CUSTOMER_KEY_API_NAME
    root: str = attrs.field(init=False)
    json_headers: Mapping[str, str] = attrs.field(init=False, repr=False)
    activity_url: str = attrs.field(init=False, repr=False)
    structure_url: str = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        base = self.base_url.rstrip("/")
        root = (
            f"{base}/one/oauth2/rt/api/{quote(self.api_version, safe='')}"
            f"/customer/{quote(self.site_key, safe='')}"
        )
        object.__setattr__(self, "root", root)  # also the DELETE's URL: no trailing slash
        object.__setattr__(self, "activity_url", root + "/activity")
        object.__setattr__(self, "structure_url", root + "/structure")
        if not self.token_url:
            object.__setattr__(self, "token_url", base + TOKEN_PATH)
        headers = dict(JSON_HEADERS)
        headers["User-Agent"] = self.user_agent
        object.__setattr__(self, "json_headers", headers)


# Wire names, unpacked from the shapes in ``_shapes`` (their camelCase field names, in field order).
# The builders below write dicts directly (no intermediate attrs objects, no converter dispatch);
# unpacking pins each name to its field, and test_wire checks the bodies against the converter.
_API_NAME, _VALUE = wire_keys(WireIdentifier)
_NAME, _PROPERTY_VALUE = wire_keys(WireProperty)
_TID, _IDENTIFIERS, _PROPERTIES, _DEVICE, _BASE_TOUCHPOINT_URI = wire_keys(CustomerContext)
_PROPOSITION, _DYNAMIC_PROPOSITION, _ACTIVITY_TYPE, _TIMESTAMP = wire_keys(WireActivity)
_CUSTOMER_CONTEXT, _ACTIVITIES = wire_keys(ActivityBody)
_STRUCTURE_CONTEXT, _STRUCTURE_API_NAME = wire_keys(StructureBody)
_DELETE_TID, _DELETE_IDENTIFIER = wire_keys(DeleteBody)
# Device fields in wire order, each paired with the Device attribute that feeds it.
_DEVICE_FIELDS = tuple(
    zip(
        wire_keys(WireDevice),
        (
            "app_name",
            "app_version",
            "manufacturer",
            "model",
            "dev_type",
            "os_name",
            "os_version",
            "latitude",
            "longitude",
            "location_updated",
            "location_accuracy",
            "ip_address",
            "locale",
            "push_token",
        ),
        strict=True,
    )
)


def identifiers(customer: Customer, key_attribute: str) -> list[tuple[str, str]]:
    """The customer's ``(apiName, value)`` pairs: the key under ``key_attribute`` first.

    Raises:
        ValidationError: the customer's identifiers give the key attribute another value.
    """
    key = customer.key
    if not customer.identifiers:
        return [] if key is None else [(key_attribute, key)]
    pairs: list[tuple[str, str]] = []
    if key is not None:
        pairs.append((key_attribute, key))
    for api_name, value in customer.identifiers.items():
        if api_name == key_attribute and key is not None:
            if value != key:
                raise ValidationError(
                    "customer.identifiers",
                    f"{api_name!r} is the customer key attribute and differs from customer.key",
                )
            continue
        pairs.append((api_name, value))
    return pairs


def _device(device: Device) -> dict[str, object]:
    wire: dict[str, object] = {}
    for wire_name, attribute in _DEVICE_FIELDS:
        value = getattr(device, attribute)
        if value is not None:
            wire[wire_name] = format_timestamp(value) if wire_name == "locLastUpdated" else value
    return wire


def _context(
    endpoints: Endpoints,
    customer: Customer,
    touchpoint: str,
    properties: Mapping[str, str],
    device: Device | None,
) -> dict[str, object]:
    """``customerContext``: absent members omitted (never null)."""
    context: dict[str, object] = {}
    if customer.tid is not None:
        context[_TID] = customer.tid
    if customer.identifiers:
        context[_IDENTIFIERS] = [
            {_API_NAME: name, _VALUE: value}
            for name, value in identifiers(customer, endpoints.customer_key_attribute)
        ]
    elif customer.key is not None:  # the common case, without the general path's lists
        context[_IDENTIFIERS] = [
            {_API_NAME: endpoints.customer_key_attribute, _VALUE: customer.key}
        ]
    if properties:
        context[_PROPERTIES] = [{_NAME: n, _PROPERTY_VALUE: v} for n, v in properties.items()]
    if device is not None:
        context[_DEVICE] = _device(device)
    context[_BASE_TOUCHPOINT_URI] = touchpoint
    return context


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
    body = {
        _CUSTOMER_CONTEXT: _context(
            endpoints, request.customer, request.touchpoint, request.properties, request.device
        ),
        _ACTIVITIES: [_activity(a) for a in request.activities],
    }
    url = endpoints.activity_url
    return WireRequest("POST", url, endpoints.json_headers, orjson.dumps(body), url)


def build_structure(
    endpoints: Endpoints,
    customer: Customer,
    touchpoint: str,
    structure: str,
    properties: Mapping[str, str],
    device: Device | None = None,
) -> WireRequest:
    """``POST {root}/structure`` asking for one Pull Structure of one customer."""
    body = {
        _STRUCTURE_CONTEXT: _context(endpoints, customer, touchpoint, properties, device),
        _STRUCTURE_API_NAME: structure,
    }
    url = endpoints.structure_url
    return WireRequest("POST", url, endpoints.json_headers, orjson.dumps(body), url)


def delete_target(customer: Customer, key_attribute: str) -> dict[str, object]:
    """The DELETE body naming one customer: its TID when known, else its only identifier.

    Raises:
        ValidationError: no TID and several identifiers (the API deletes by one of them, and
            which one would decide what is erased).
    """
    if customer.tid is not None:
        return {_DELETE_TID: customer.tid}  # [I] a customer known both ways: the TID decides
    pairs = identifiers(customer, key_attribute)
    if len(pairs) != 1:
        raise ValidationError(
            "customer",
            f"a delete names one customer by its TID or by one identifier; this one has "
            f"{len(pairs)} identifiers and no TID",
        )
    ((name, value),) = pairs
    return {_DELETE_IDENTIFIER: {_API_NAME: name, _VALUE: value}}


def build_delete(endpoints: Endpoints, customer: Customer) -> WireRequest:
    """``DELETE {root}`` (no trailing slash) with a JSON body naming the customer."""
    body = delete_target(customer, endpoints.customer_key_attribute)
    url = endpoints.root
    return WireRequest("DELETE", url, endpoints.json_headers, orjson.dumps(body), url)


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
