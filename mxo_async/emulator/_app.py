"""The aiohttp.web application: token endpoint, the three API calls, fault injection.

It answers as the wire contract (docs/wire-contract.md) and the vendor's spec say, and as strictly: a query string on an API call,
an unknown member anywhere in a body or a future activity timestamp is a 400, and every error
body is ``{"errorCode", "errorMessage"}`` with a code from the spec's enum. Routes are exact: a
DELETE of ``.../customer/{sk}/`` (trailing slash) is an unknown route (aiohttp's plain 404).

Handlers stay lean (benchmarks drive thousands of requests per second): no per-request logging,
orjson bodies, one dictionary lookup to authorise, request bodies checked by compiled predicates.
Secrets and tokens are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qs, unquote_plus

import orjson
from aiohttp import web

from ._config import Counters, EmulatorConfig
from ._faults import AFTER_APPLY, FaultDice, Faults, RateCap, format_retry_after
from ._requests import (
    CUSTOMER_NOT_FOUND,
    GENERAL,
    INVALID_ACTIVITY_TYPE_CODE,
    INVALID_API_NAME,
    INVALID_PROPOSITION_CODE,
    INVALID_SITEKEY,
    BadRequest,
    RequestReader,
)
from ._store import Record, Store
from ._structures import STRUCTURES

__all__ = ["API_ROOT", "STATE", "TOKEN_PATH", "EmulatorState", "make_app"]

TOKEN_PATH = "/one/oauth2token"  # noqa: S105 - a path, not a password
API_ROOT = "/one/oauth2/rt/api/{api_version}/customer/{site_key}"
_JSON = "application/json"
_HTML_ERROR = (
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
)
# SO_LINGER on, timeout 0: closing the socket sends a TCP RST instead of a FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)

Payload = dict[str, object]


class EmulatorState:
    """Everything the handlers share: config, faults, tokens, store and counters.

    ``reader`` (which compiles the request schema, and needs jsonschema) is set by :func:`make_app`.
    """

    reader: RequestReader

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.faults: Faults = config.faults
        self.clock = clock
        self.now = now
        self.counters = Counters()
        self.store = Store(
            config.seed,
            now,
            keep_activities=config.keep_activities,
            key_attribute=config.key_attribute,
        )
        self.dice = FaultDice(config.seed)
        self.rate_cap = RateCap()
        self.tokens: dict[str, float] = {}
        self.in_flight = 0  # API requests being handled (including ones the client gave up on)

    def issue_token(self) -> str:
        """Issue a new bearer token valid for ``token_ttl`` seconds of the monotonic clock."""
        now = self.clock()
        if len(self.tokens) > 1024:  # forget expired tokens now and then
            self.tokens = {t: exp for t, exp in self.tokens.items() if exp > now}
        token = secrets.token_urlsafe(32)
        self.tokens[token] = now + self.config.token_ttl
        self.counters.tokens_issued += 1
        return token

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far."""
        self.tokens.clear()

    def count_fault(self, kind: str) -> None:
        faults = self.counters.faults_injected
        faults[kind] = faults.get(kind, 0) + 1


STATE = web.AppKey("mxo_emulator_state", EmulatorState)


def _json(status: int, payload: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, content_type=_JSON, headers=headers
    )


def _error(
    status: int, message: str, headers: dict[str, str] | None = None, code: str = GENERAL
) -> web.Response:
    return _json(status, {"errorCode": code, "errorMessage": message}, headers)


def _dropped(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _reset(request: web.BaseRequest) -> web.Response:
    """Drop the connection with a TCP reset and send nothing.

    The returned response is never written: aiohttp finds the transport closing, treats it as a
    premature client disconnect and closes the connection quietly.
    """
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()
    return web.Response()


def _status_fault(state: EmulatorState, request: web.BaseRequest, kind: str) -> web.Response:
    """Answer with an injected error, before anything is applied."""
    state.count_fault(kind)
    retry_after = {"Retry-After": format_retry_after(state.faults.retry_after)}
    if kind in ("status_429", "token_429"):
        return _error(429, "too many requests", retry_after)
    if kind == "status_429_bare":
        return _error(429, "too many requests")
    if kind in ("status_503", "token_503"):
        return _error(503, "service unavailable", retry_after)
    if kind == "html_error":
        return web.Response(body=_HTML_ERROR, status=502, content_type="text/html")
    if kind in ("reset_before", "token_reset"):
        return _reset(request)
    status = int(kind.rpartition("_")[2])  # status_500, status_502, status_504, token_500
    return _error(status, "injected server error")


async def _after_fault(
    state: EmulatorState, request: web.BaseRequest, kind: str, status: int, body: bytes
) -> web.StreamResponse:
    """Spoil the answer (``status``, ``body``) to a request that has been handled and applied."""
    state.count_fault(kind)
    faults = state.faults
    if kind == "reset_after":
        return _reset(request)
    if kind == "malformed_json":
        return web.Response(body=body[: max(1, len(body) // 2)], status=status, content_type=_JSON)
    if kind == "oversized":
        padding = b" " * max(0, faults.oversized_bytes - len(body))
        return web.Response(body=body[:-1] + padding + b"}", status=status, content_type=_JSON)
    # slow_body: the status line and headers go out at once, the body trickles.
    slow = web.StreamResponse(status=status, headers={"Content-Type": _JSON})
    slow.content_length = len(body)
    chunks = max(1, faults.slow_body_chunks)
    size = -(-len(body) // chunks)
    try:
        await slow.prepare(request)
        for start in range(0, len(body), size):
            await asyncio.sleep(faults.slow_body_delay)
            await slow.write(body[start : start + size])
    except ConnectionError:
        pass  # the client gave up; aiohttp closes the connection
    return slow


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, client_secret = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(client_secret)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


async def _token(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.counters.token_requests += 1
    fault = state.dice.token(state.faults)
    if fault is not None:
        return _status_fault(state, request, fault)
    credentials = _basic_credentials(request.headers.get("Authorization", ""))
    config = state.config
    if credentials is None or not (
        _same(credentials[0], config.client_id) & _same(credentials[1], config.client_secret)
    ):
        body = {"error": "invalid_client", "error_description": "client authentication failed"}
        return _json(401, body, {"WWW-Authenticate": 'Basic realm="mxo"'})
    form = parse_qs((await request.read()).decode("utf-8", "replace"))
    grant = form.get("grant_type")
    if grant is None:
        return _json(
            400, {"error": "invalid_request", "error_description": "grant_type is required"}
        )
    if grant != ["client_credentials"]:
        body = {"error": "unsupported_grant_type", "error_description": "only client_credentials"}
        return _json(400, body)
    ttl = config.token_ttl
    expires_in: float = int(ttl) if ttl == int(ttl) else ttl
    token = {"access_token": state.issue_token(), "token_type": "Bearer", "expires_in": expires_in}
    return _json(200, token, {"Cache-Control": "no-store"})


def _unauthorized(state: EmulatorState, request: web.BaseRequest) -> web.Response | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        message = "missing bearer token"
    else:
        expiry = state.tokens.get(header[7:])
        if expiry is None:
            message = "invalid or revoked access token"
        elif state.clock() >= expiry:
            message = "access token expired"
        else:
            return None
    state.counters.unauthorized += 1
    return _error(401, message, {"WWW-Authenticate": 'Bearer error="invalid_token"'})


_UNKNOWN_PROPOSITION: Final = "the proposition code is not known in this space"
_UNKNOWN_ACTIVITY_TYPE: Final = "the activity type code is not known in this space"
_REJECTED: Final = "the activity could not be processed (injected reject fault)"


def _activity(state: EmulatorState, body: bytes) -> tuple[int, Payload]:
    context, activities = state.reader.activity(body)
    store = state.store
    record, tid = store.resolve(context.tid, context.identifiers)
    counters = state.counters
    catalogue = state.config.catalogue
    propositions, types = catalogue.propositions, catalogue.activity_types
    errors: list[Payload] = []
    if propositions is not None or types is not None or state.faults.reject:
        stored = []
        for activity in activities:
            if propositions is not None and activity["propositionCode"] not in propositions:
                errors.append(
                    _activity_error(INVALID_PROPOSITION_CODE, _UNKNOWN_PROPOSITION, activity)
                )
            elif types is not None and activity["activityTypeCode"] not in types:
                errors.append(
                    _activity_error(INVALID_ACTIVITY_TYPE_CODE, _UNKNOWN_ACTIVITY_TYPE, activity)
                )
            elif state.dice.reject(state.faults):
                state.count_fault("reject")
                errors.append(_activity_error(GENERAL, _REJECTED, activity))
            else:
                stored.append(activity)
        counters.rejected_activities += len(errors)
        activities = stored
    counters.applied_activities += store.apply(record, tid, context.touchpoint, activities)
    counters.activity_requests_applied += 1
    return 200, {"tid": tid, "errors": errors}


def _activity_error(code: str, message: str, activity: dict[str, str]) -> Payload:
    """One entry of a 200's ``errors``: the activity is echoed as it was sent."""
    return {"errorCode": code, "errorMessage": message, "activity": activity}


def _structure(state: EmulatorState, body: bytes) -> tuple[int, Payload]:
    context, name = state.reader.structure(body)
    compute = STRUCTURES.get(name)
    if compute is None:
        # [I] the spec's 404 "structure not found" names no errorCode: the API name is invalid.
        message = f"structure {name[:80]!r} is not published"
        return 404, {
            "errorCode": INVALID_API_NAME,
            "errorMessage": message,
            "structureApiName": name,
        }
    state.counters.structures_served += 1
    record = state.store.find(context.tid, context.identifiers)
    envelope: Payload = {"structureApiName": name}
    tid = _tid_of(record, context.tid)
    if tid is not None:
        envelope["tid"] = tid
    envelope["structure"] = compute(record, context.properties)
    return 200, envelope


def _tid_of(record: Record | None, sent: str | None) -> str | None:
    """The TID a structure answer names: the one sent if it is the customer's, else the primary."""
    if record is None:
        return sent  # an unknown customer: read, never created
    return sent if sent is not None and sent in record.tids else record.tids[0]


def _delete(state: EmulatorState, body: bytes) -> tuple[int, Payload]:
    if not state.config.delete_permission:
        return 403, {
            "errorCode": GENERAL,
            "errorMessage": "these credentials lack permission to delete customers",
        }
    tid, identifier = state.reader.delete(body)
    store = state.store
    record = store.find(tid) if identifier is None else store.find(None, (identifier,))
    if record is None:
        return 404, {"errorCode": CUSTOMER_NOT_FOUND, "errorMessage": "customer not found"}
    deleted: Payload = {
        "tids": list(record.tids),
        "identifiers": [{"apiName": n, "value": v} for n, v in record.identifiers.items()],
    }
    store.delete(record)
    state.counters.deletes_applied += 1
    return 200, deleted


Apply = Callable[[EmulatorState, bytes], tuple[int, Payload]]


async def _handle(state: EmulatorState, request: web.Request, apply: Apply) -> web.StreamResponse:
    # The body is read before ``latency``: a request that has fully arrived is handled even when
    # its client gives up while the server is slow (aiohttp drops a buffered body once the
    # connection is lost), so a timed-out call is applied every time, not by a race.
    try:
        body = await request.read()
    except ConnectionError:
        # The client hung up before its body arrived: nothing is applied and no answer can be
        # sent. Not an emulator error to log.
        return web.Response(status=499)
    faults = state.faults
    if faults.latency:
        await asyncio.sleep(faults.latency)
    denied = _unauthorized(state, request)
    if denied is not None:
        return denied
    if request.match_info["site_key"] != state.config.site_key:
        return _error(404, "unknown site key", code=INVALID_SITEKEY)
    if request.query_string:
        return _error(400, "the Customer API takes no query parameters")
    if faults.max_rate is not None and not state.rate_cap.admit(state.clock(), faults.max_rate):
        state.count_fault("max_rate")
        return _error(429, "rate limit exceeded")
    fault = state.dice.api(faults)
    if fault is not None and fault not in AFTER_APPLY:
        return _status_fault(state, request, fault)
    try:
        status, payload = apply(state, body)
    except BadRequest as exc:
        status, payload = 400, {"errorCode": exc.code, "errorMessage": str(exc)}
    if fault is None:
        return _json(status, payload)
    return await _after_fault(state, request, fault, status, orjson.dumps(payload))


def _api(counter: str, apply: Apply) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Make the handler of one API endpoint: count it, then :func:`_handle` it."""

    async def handler(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        counters = state.counters
        counters.requests += 1
        setattr(counters, counter, getattr(counters, counter) + 1)
        state.in_flight += 1
        try:
            response = await _handle(state, request, apply)
        finally:
            state.in_flight -= 1
        if not _dropped(request):
            counts = counters.status_counts
            counts[response.status] = counts.get(response.status, 0) + 1
        return response

    return handler


def make_app(state: EmulatorState) -> web.Application:
    """Build the application serving ``state``.

    Raises:
        ImportError: jsonschema is missing (the emulator validates every body against the schema).
    """
    config = state.config
    state.reader = RequestReader(
        now=state.now,
        clock_skew=config.clock_skew,
        key_attribute=config.key_attribute,
        identifier_attributes=config.catalogue.identifier_attributes,
    )
    app = web.Application()
    app[STATE] = state
    app.router.add_post(TOKEN_PATH, _token)
    app.router.add_post(API_ROOT + "/activity", _api("activity_requests", _activity))
    app.router.add_post(API_ROOT + "/structure", _api("structure_requests", _structure))
    app.router.add_delete(API_ROOT, _api("delete_requests", _delete))
    return app
