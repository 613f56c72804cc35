"""The aiohttp transport: responses come back whole; aiohttp failures become our errors.

Failures are injected with aioresponses; responses come from a tiny aiohttp.web app on loopback
(aioresponses 0.7.9 cannot build responses for aiohttp 3.14's ClientResponse).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses

from mxo_async import TimeoutError as MXOTimeoutError
from mxo_async import Timeouts, TransportError
from mxo_async._transport import AiohttpTransport

from .fakes import recorded_timers

URL = "https://eu2.thunderhead.com/one/oauth2/rt/api/3.1.0/customer/S/activity?tid=a%2Fb"
ANY = re.compile(r"^https://eu2\.thunderhead\.com/.*$")


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A loopback server: /ok echoes, /big answers 2 KiB, /chunked streams 2 KiB unannounced,
    /slow answers after 5 s."""
    seen: list[web.Request] = []

    async def ok(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(status=201, body=b'{"tid": "x"}', headers={"X-Test": "1"})

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 2048)

    async def chunked(request: web.Request) -> web.StreamResponse:
        reply = web.StreamResponse()
        reply.enable_chunked_encoding()
        await reply.prepare(request)
        for _ in range(4):
            await reply.write(b"y" * 512)
        await reply.write_eof()
        return reply

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=b"{}")

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    app.router.add_get("/chunked", chunked)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    t = AiohttpTransport(max_body=1024)
    yield t
    await t.aclose()


async def test_returns_status_headers_and_body(
    transport: AiohttpTransport, server: tuple[str, list[web.Request]]
) -> None:
    """The whole response is read and returned."""
    base, _ = server
    raw = await transport.request("POST", base + "/ok", {"Accept": "application/json"}, b"{}")
    assert (201, b'{"tid": "x"}', "1") == (raw.status, raw.body, raw.headers["X-Test"])


async def test_url_is_sent_as_encoded(
    transport: AiohttpTransport, server: tuple[str, list[web.Request]]
) -> None:
    """The percent-encoded URL built by the wire module is not re-quoted."""
    base, seen = server
    await transport.request("POST", base + "/ok?tid=a%2Fb%20c", {}, b"{}")
    assert ("tid=a%2Fb%20c", "a/b c") == (seen[0].raw_path.split("?")[1], seen[0].query["tid"])


@pytest.mark.parametrize("path", ["/big", "/chunked"])
async def test_oversized_body_is_refused(
    transport: AiohttpTransport, server: tuple[str, list[web.Request]], path: str
) -> None:
    """A body larger than max_body raises TransportError instead of filling memory."""
    base, _ = server
    with pytest.raises(TransportError, match="limit"):
        await transport.request("GET", base + path, {}, None)


async def test_disconnect_after_sending_is_marked_sent(transport: AiohttpTransport) -> None:
    """A server disconnect may follow a received request: request_sent stays True."""
    with aioresponses() as mocked:
        mocked.post(ANY, exception=aiohttp.ServerDisconnectedError())
        with pytest.raises(TransportError) as info:
            await transport.request("POST", URL, {}, b"{}")
    assert info.value.request_sent and not isinstance(info.value, MXOTimeoutError)


async def test_read_timeout_becomes_our_timeout_error(transport: AiohttpTransport) -> None:
    """aiohttp's and asyncio's timeouts surface as mxo_async.TimeoutError."""
    with aioresponses() as mocked:
        mocked.post(ANY, exception=TimeoutError())
        with pytest.raises(MXOTimeoutError) as info:
            await transport.request("POST", URL, {}, b"{}")
    assert info.value.request_sent


async def test_connection_refused_is_marked_not_sent() -> None:
    """A refused connection (nothing listens on the port) certainly sent nothing."""
    transport = AiohttpTransport()
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    try:
        with pytest.raises(TransportError) as info:
            await transport.request("GET", f"http://127.0.0.1:{port}/", {}, None)
    finally:
        await transport.aclose()
    assert (False, True) == (info.value.request_sent, "cannot connect" in str(info.value))


async def test_closed_transport_refuses_requests(transport: AiohttpTransport) -> None:
    """After aclose, requests fail with a clear TransportError."""
    await transport.aclose()
    with pytest.raises(TransportError, match="closed"):
        await transport.request("GET", URL, {}, None)


async def test_callers_session_is_not_closed() -> None:
    """A session passed in by the caller stays open after the transport closes."""
    session = aiohttp.ClientSession()
    transport = AiohttpTransport(session=session)
    await transport.aclose()
    assert not session.closed
    await session.close()


@pytest.mark.parametrize(
    ("timeouts", "time_left"), [(Timeouts(total=0.1), None), (Timeouts(total=30), 0.1)]
)
async def test_a_stalled_server_hits_the_attempt_limit(
    server: tuple[str, list[web.Request]], timeouts: Timeouts, time_left: float | None
) -> None:
    """Timeouts.total (or the call's remaining time, if shorter) bounds each attempt."""
    base, _ = server
    transport = AiohttpTransport(timeouts=timeouts)
    try:
        with pytest.raises(MXOTimeoutError, match=r"within 0\.1 s") as info:
            await transport.request("GET", base + "/slow", {}, None, time_left)
        assert info.value.request_sent  # the server may have acted on it: ambiguous for a POST
        raw = await transport.request("POST", base + "/ok", {}, b"{}")  # the client still works
        assert 201 == raw.status
    finally:
        await transport.aclose()
    task = asyncio.current_task()
    assert task is not None and 0 == task.cancelling()


async def test_requests_do_not_arm_loop_timers_each(
    transport: AiohttpTransport, server: tuple[str, list[web.Request]]
) -> None:
    """With default Timeouts, 200 requests arm a handful of loop timers, not several each.

    aiohttp's own total/connect/sock_read timeouts cost up to four timers per request; the
    transport leaves the attempt limit to its watchdog (one timer for all) instead.
    """
    base, _ = server
    await transport.request("POST", base + "/ok", {}, b"{}")  # connection opened, session ready
    with recorded_timers(asyncio.get_running_loop()) as armed:
        for _ in range(200):
            await transport.request("POST", base + "/ok", {}, b"{}")
    assert len(armed) < 10, armed[:10]


async def test_each_request_carries_its_own_headers(
    transport: AiohttpTransport, server: tuple[str, list[web.Request]]
) -> None:
    """The header conversion kept for the last dict never leaks into a request with another."""
    base, seen = server
    first, second = {"X-Call": "1"}, {"X-Call": "2"}
    for headers in (first, second, first, first):
        await transport.request("POST", base + "/ok", headers, b"{}")
    assert ["1", "2", "1", "1"] == [request.headers["X-Call"] for request in seen]
