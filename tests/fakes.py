"""Test doubles: a recording transport, and the fake clock (re-exported from mxo_async._clock)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ssl
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TypedDict, TypeVarTuple
from unittest import mock

import aiohttp
import attrs
import orjson

from mxo_async import EventHandler, Limits, RetryPolicy, Timeouts
from mxo_async._clock import FakeClock
from mxo_async._fleet import Coordinator
from mxo_async._transport import RawResponse

__all__ = [
    "ClientOptions",
    "FakeClock",
    "FakeTransport",
    "Handler",
    "Sent",
    "recorded_timers",
    "response",
]

_Ts = TypeVarTuple("_Ts")


class ClientOptions(TypedDict, total=False):
    """MXOClient's keyword options but its two seams (``transport``, ``clock``), which test
    helpers set themselves: helpers take ``**kwargs: Unpack[ClientOptions]`` and pass them on
    type-checked."""

    token_url: str | None
    api_version: str
    customer_key_attribute: str
    retry: RetryPolicy | None
    timeouts: Timeouts | None
    limits: Limits | None
    session: aiohttp.ClientSession | None
    ssl: ssl.SSLContext | None
    on_event: EventHandler | None
    allow_insecure_http: bool
    token_lifetime: float
    coordinator: Coordinator | None


TOKEN_BODY = orjson.dumps(
    {"access_token": "tok-SECRET-1", "token_type": "Bearer", "expires_in": 3600}
)


@attrs.define
class Sent:
    """One request the fake transport received."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None


def response(
    status: int = 200, body: object = None, headers: Mapping[str, str] | None = None
) -> RawResponse:
    """A canned response; dict/list bodies are JSON-encoded."""
    data = body if isinstance(body, bytes) else orjson.dumps(body if body is not None else {})
    return RawResponse(status, dict(headers or {}), data)


Handler = Callable[[Sent], Awaitable[RawResponse] | RawResponse]


class FakeTransport:
    """Records requests; answers token requests with a token and API calls via ``handler``."""

    def __init__(
        self, handler: Handler | None = None, token_handler: Handler | None = None
    ) -> None:
        self.sent: list[Sent] = []
        self.handler = handler or (lambda sent: response(200, {"tid": "t-1", "errors": []}))
        self.token_handler = token_handler or (lambda sent: response(200, TOKEN_BODY))
        self.closed = False

    @property
    def api_calls(self) -> list[Sent]:
        return [s for s in self.sent if "/oauth2token" not in s.url]

    @property
    def token_calls(self) -> list[Sent]:
        return [s for s in self.sent if "/oauth2token" in s.url]

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        time_left: float | None = None,
    ) -> RawResponse:
        sent = Sent(method, url, dict(headers), body)
        self.sent.append(sent)
        handler = self.token_handler if "/oauth2token" in url else self.handler
        result = handler(sent)
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            return await result
        return result

    async def aclose(self) -> None:
        self.closed = True


@contextlib.contextmanager
def recorded_timers(loop: asyncio.AbstractEventLoop) -> Iterator[list[tuple[float, object]]]:
    """Every timer armed on ``loop`` meanwhile, as (seconds from now, callback)."""
    armed: list[tuple[float, object]] = []
    original = loop.call_at

    def recording(
        when: float,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        armed.append((when - loop.time(), callback))
        return original(when, callback, *args, context=context)

    with mock.patch.object(loop, "call_at", recording):
        yield armed
