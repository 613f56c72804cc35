"""The only package that knows the wire contract: build requests, decipher responses.

Everything here is pure: no awaits, no sleeps, no clock reads (callers pass ``now`` where an
HTTP-date must be interpreted). The contract's interpretations ([I] in the comments) live here
and nowhere else, so correcting one against a real tenant is a change in one package.
"""

from __future__ import annotations

from ._requests import (
    Endpoints,
    build_activity,
    build_delete,
    build_structure,
    build_token_request,
    delete_target,
    identifiers,
)
from ._responses import (
    CUSTOMER_NOT_FOUND,
    decipher_activity,
    decipher_erasure,
    decipher_error,
    decipher_structure,
    decipher_token,
    match_rejections,
    parse_retry_after,
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
    "CUSTOMER_NOT_FOUND",
    "DEFAULT_API_VERSION",
    "Endpoints",
    "TokenGrant",
    "WireRequest",
    "build_activity",
    "build_delete",
    "build_structure",
    "build_token_request",
    "converter",
    "decipher_activity",
    "decipher_erasure",
    "decipher_error",
    "decipher_structure",
    "decipher_token",
    "delete_target",
    "format_timestamp",
    "identifiers",
    "make_wire_converter",
    "match_rejections",
    "parse_retry_after",
]
