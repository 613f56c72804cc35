"""Test doubles for code that uses mxo_async: a transport that answers from a function, and a
clock whose time jumps to the next deadline (no test waits on real time).

Network-free unit tests, as httpx's ``MockTransport`` allows::

    from mxo_async.testing import FakeClock, MockTransport, json_response

    def answer(request):
        if request.url.endswith("/oauth2token"):
            return json_response(200, {"access_token": "t", "expires_in": 3600})
        return json_response(200, {"tid": "d290f1ee-6c54-4b01-90e6-d701748f0851", "errors": []})

    client = mxo.MXOClient(base_url, site_key, client_id, secret,
                           transport=MockTransport(answer), clock=FakeClock())

For tests against a tenant over real HTTP, use the built-in emulator (``mxo_async.emulator`` and
the pytest fixtures).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping

import attrs
import orjson

from ._clock import Clock, FakeClock, SystemClock
from ._transport import RawResponse, Transport

__all__ = [
    "Clock",
    "FakeClock",
    "MockTransport",
    "RawResponse",
    "Request",
    "SystemClock",
    "Transport",
    "json_response",
]


@attrs.frozen
class Request:
    """A request the client sent through a :class:`MockTransport`."""

    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(repr=False)  # holds the Authorization header
    body: bytes | None = attrs.field(repr=False)

    def json(self) -> object:
        """The body, decoded as JSON."""
        return orjson.loads(self.body or b"null")


Handler = Callable[[Request], RawResponse | Awaitable[RawResponse]]


class MockTransport:
    """A :class:`Transport` whose answers come from ``handler`` (sync or async); it records
    every request in :attr:`requests`."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[Request] = []
        self.closed = False

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        time_left: float | None = None,
    ) -> RawResponse:
        request = Request(method, url, dict(headers), body)
        self.requests.append(request)
        answer = self._handler(request)
        if inspect.isawaitable(answer):
            return await answer
        return answer

    async def aclose(self) -> None:
        self.closed = True


def json_response(
    status: int, body: object = None, headers: Mapping[str, str] | None = None
) -> RawResponse:
    """A response with ``body`` encoded as JSON (bytes are sent as they are)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body if body is not None else {})
    return RawResponse(status, {"Content-Type": "application/json", **(headers or {})}, data)
