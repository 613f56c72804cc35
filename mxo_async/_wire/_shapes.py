"""Wire shapes and the cattrs converter: camelCase names, omitted ``None``s, RFC 3339 ``Z``."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import attrs
from cattrs.gen import make_dict_structure_fn, override
from cattrs.preconf.orjson import OrjsonConverter, make_converter

from .._models import Identifier

DEFAULT_API_VERSION: Final = "3.1.0"
# [I] the customer key's attribute API name when the client is not told another one: public
# samples use it, but each space names its key attribute itself (the spec's example is "email").
CUSTOMER_KEY_API_NAME: Final = "customerkey"
TOKEN_PATH: Final = "/one/oauth2token"  # noqa: S105 - a path, not a secret
ERROR_EXCERPT: Final = 200
OAUTH_CODE = re.compile(r"[a-z_]{1,64}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # C0, DEL, C1, line separators
JSON_HEADERS: Final = (("Accept", "application/json"), ("Content-Type", "application/json"))


@attrs.define
class WireRequest:
    """An HTTP request ready to send (the ``Authorization`` of API calls is added at send time).

    Treated as immutable; not ``frozen`` because one is built per request and frozen attrs
    classes pay an ``object.__setattr__`` call per field.
    """

    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(repr=False)  # the token request carries the secret
    body: bytes | None = attrs.field(default=None, repr=False)  # holds customer identifiers
    path: str = ""  # the URL as it may be logged


@attrs.frozen
class TokenGrant:
    """A parsed token response. The token never appears in a repr."""

    access_token: str = attrs.field(repr=False)
    expires_in: float | None
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret


# -- wire shapes -----------------------------------------------------------------------------------
# Field order is the order docs/wire-contract.md shows; names are snake_case here and camelCase on the wire.


@attrs.frozen
class WireIdentifier:
    api_name: str
    value: str


@attrs.frozen
class WireProperty:
    name: str
    value: str


@attrs.frozen(kw_only=True)
class WireDevice:
    app_name: str
    app_ver: str | None = None
    dev_mfr: str | None = None
    dev_model: str | None = None
    dev_type: str
    os_name: str
    os_ver: str | None = None
    loc_latitude: float | None = None
    loc_longitude: float | None = None
    loc_last_updated: datetime | None = None
    loc_horz_accuracy: float | None = None
    ip_address: str | None = None
    locale: str | None = None
    push_token: str | None = None


@attrs.frozen(kw_only=True)
class CustomerContext:
    tid: str | None = None
    identifiers: tuple[WireIdentifier, ...] | None = None
    properties: tuple[WireProperty, ...] | None = None
    device: WireDevice | None = None
    base_touchpoint_uri: str


@attrs.frozen(kw_only=True)
class WireActivity:
    proposition_code: str
    dynamic_proposition_code: str | None = None
    activity_type_code: str
    timestamp: datetime | None = None


@attrs.frozen(kw_only=True)
class ActivityBody:
    customer_context: CustomerContext
    activities: tuple[WireActivity, ...]


@attrs.frozen(kw_only=True)
class StructureBody:
    customer_context: CustomerContext
    structure_api_name: str


@attrs.frozen(kw_only=True)
class DeleteBody:
    """One customer to delete: a TID or one identifier, never both (docs/wire-contract.md)."""

    tid: str | None = None
    identifier: WireIdentifier | None = None


@attrs.frozen
class ErasureBody:
    """A delete's 200 answer: ``{"tids": [str], "identifiers": [{"apiName", "value"}]}``.

    Built by :meth:`structure` (the converter's hook), strictly: cattrs' generic hooks would
    read the string ``"abc"`` as the TIDs ``('a', 'b', 'c')`` and ``str()`` any number, and what
    is read here is journaled as what was erased.
    """

    tids: tuple[str, ...] = ()
    identifiers: tuple[Identifier, ...] = ()

    @classmethod
    def structure(cls, data: Mapping[str, Any], _: object = None) -> ErasureBody:
        """The body of ``data``; a missing or null member is empty (TypeError if mistyped)."""
        tids = data.get("tids")
        if tids is None:
            tids = []
        if not isinstance(tids, list) or not all(isinstance(tid, str) for tid in tids):
            raise TypeError("'tids' must be a list of strings")
        found = data.get("identifiers")
        if found is None:
            found = []
        if not isinstance(found, list):
            raise TypeError("'identifiers' must be a list of objects")
        identifiers = []
        for item in found:
            api_name = item.get("apiName") if isinstance(item, dict) else None
            value = item.get("value") if isinstance(item, dict) else None
            if not isinstance(api_name, str) or not isinstance(value, str):
                raise TypeError("each identifier must be an object of string 'apiName' and 'value'")
            identifiers.append(Identifier(api_name, value))
        return cls(tuple(tids), tuple(identifiers))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def wire_keys(cls: type[Any]) -> tuple[str, ...]:
    """The wire (camelCase) names of a wire shape's fields, in field order (= wire order).

    The request builders unpack these, so every wire name still comes from the shapes here.
    """
    return tuple(_camel(a.name) for a in attrs.fields(cls))


# Activities stamped together (a fleet worker gives every entry added in one millisecond that
# millisecond; a caller reuses one datetime for a batch) share the text: formatting costs ~15x a
# cache hit, a miss adds ~15 %. Equal aware datetimes are one instant, hence one text.
@functools.lru_cache(maxsize=256)
def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``; milliseconds only when non-zero (sub-millisecond is dropped)."""
    utc = value.astimezone(UTC)
    text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    millis = utc.microsecond // 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


_WIRE_SHAPES: Final = (
    WireIdentifier,
    WireProperty,
    WireDevice,
    CustomerContext,
    DeleteBody,
    WireActivity,
    ActivityBody,
    StructureBody,
)
_PLAIN: Final = (str, int, float, bool)


def _camel_case_hook(conv: OrjsonConverter, cls: type[Any]) -> Any:
    """Unstructure ``cls`` in field order with camelCase keys, omitting ``None`` fields.

    cattrs' generated functions move omittable fields to the end; the wire contract's samples show a fixed
    order, and we keep it so requests match them byte for byte.
    """
    names = tuple(zip((a.name for a in attrs.fields(cls)), wire_keys(cls), strict=True))
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
converter.register_structure_hook(ErasureBody, ErasureBody.structure)
