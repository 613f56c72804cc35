"""The only module that knows WIRE.md: build requests, parse responses.

Everything here is pure: no awaits, no sleeps, no clock reads (callers pass ``now`` where an
HTTP-date must be interpreted). Assumed parts of the contract ([A] in WIRE.md) live here and nowhere
else, so correcting one against a real tenant is a one-file change.
"""

from __future__ import annotations

from ._requests import (
    Endpoints,
    build_activity,
    build_delete,
    build_structure,
    build_token_request,
)
from ._responses import (
    parse_activity,
    parse_erasure,
    parse_error,
    parse_retry_after,
    parse_structure,
    parse_token,
)
from ._shapes import (
    CUSTOMER_KEY_API_NAME,
    DEFAULT_API_VERSION,
    TokenGrant,
    WireRequest,
    converter,
    format_timestamp,
    make_wire_converter,
)

__all__ = [
    "CUSTOMER_KEY_API_NAME",
    "DEFAULT_API_VERSION",
    "Endpoints",
    "TokenGrant",
    "WireRequest",
    "build_activity",
    "build_delete",
    "build_structure",
    "build_token_request",
    "converter",
    "format_timestamp",
    "make_wire_converter",
    "parse_activity",
    "parse_erasure",
    "parse_error",
    "parse_retry_after",
    "parse_structure",
    "parse_token",
]
