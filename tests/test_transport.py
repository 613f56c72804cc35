"""The aiohttp transport: responses come back whole; aiohttp failures become our errors.

Failures are injected with aioresponses; responses come from a tiny aiohttp.web app on loopback
(aioresponses 0.7.9 cannot build responses for aiohttp 3.14's ClientResponse).
"""

from __future__ import annotations

import asyncio
import gzip
import re
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses

import mxo_async
from mxo_async import (
    Activity,
    Customer,
    Limits,
    MXOClient,
    Timeouts,
    TransportError,
    ValidationError,
)
from mxo_async import TimeoutError as MXOTimeoutError
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


# -- compressed bodies (issue 13, item 7) ------------------------------------------------------


def gzip_bomb(mebibytes: int) -> bytes:
    """A valid gzip stream of ``mebibytes`` MiB of zeros, about 1 KiB per MiB, built at once.

    After a full flush the compressor's output for another MiB of zeros repeats exactly, so the
    stream is one block repeated, with the trailer (CRC-32, size) computed for the whole body.
    """
    zero = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = compressor.compress(zero) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zero) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush()[:-8]  # the final empty block, without the trailer
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(zero, crc)
    trailer = struct.pack("<II", crc, (mebibytes << 20) & 0xFFFFFFFF)
    return head + block * (mebibytes - 1) + tail + trailer


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Start ``app`` on a loopback port; return its runner and base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def compressed_server(body: bytes, encoding: str) -> tuple[web.AppRunner, str]:
    """A loopback server answering every GET with ``body`` sent as ``Content-Encoding``."""

    async def handler(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/", handler)
    return await serve(app)


def test_gzip_bomb_helper_inflates_to_its_size() -> None:
    """The test's bomb is a valid gzip stream of the announced size (checked at 8 MiB)."""
    assert bytes(8 << 20) == zlib.decompress(gzip_bomb(8), 31)


async def test_gzip_bomb_is_refused_within_bounded_memory() -> None:
    """A 512 MiB gzip bomb (about 520 KiB on the wire) ends in TransportError, peak memory < 16 MiB."""
    runner, base = await compressed_server(gzip_bomb(512), "gzip")
    transport = AiohttpTransport()  # the default 4 MiB limit
    tracemalloc.start()
    try:
        with pytest.raises(TransportError, match="limit") as info:
            await transport.request("GET", base + "/", {}, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await transport.aclose()
        await runner.cleanup()
    assert (True, True) == (info.value.request_sent, peak < 16 << 20), f"peak {peak >> 20} MiB"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_body_is_limited_by_its_decompressed_size(encoding: str) -> None:
    """A 2 KiB body compressed to a few dozen bytes is still over a 1 KiB limit."""
    wbits = 31 if encoding == "gzip" else 15
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    body = compressor.compress(b"x" * 2048) + compressor.flush()
    runner, base = await compressed_server(body, encoding)
    transport = AiohttpTransport(max_body=1024)
    try:
        with pytest.raises(TransportError, match="decompressed"):
            await transport.request("GET", base + "/", {}, None)
    finally:
        await transport.aclose()
        await runner.cleanup()


async def test_compressed_body_under_the_limit_is_returned_inflated() -> None:
    """A gzip body that inflates to 3 MiB (under 4 MiB) comes back whole and decompressed."""
    document = b'{"tids": [' + b'"t-0000000000",' * 200_000 + b'"t"]}'
    runner, base = await compressed_server(gzip.compress(document), "gzip")
    transport = AiohttpTransport()
    try:
        raw = await transport.request("GET", base + "/", {}, None)
    finally:
        await transport.aclose()
        await runner.cleanup()
    assert (len(document), document) == (len(raw.body), raw.body)


async def test_corrupt_gzip_body_is_a_transport_error() -> None:
    """A body announced as gzip that is not ends in TransportError, not an aiohttp exception."""
    runner, base = await compressed_server(b"not gzip at all", "gzip")
    transport = AiohttpTransport()
    try:
        with pytest.raises(TransportError, match="content-encoding"):
            await transport.request("GET", base + "/", {}, None)
    finally:
        await transport.aclose()
        await runner.cleanup()


# -- a caller's session (issue 13, item 6) -----------------------------------------------------


async def status_server(status: int) -> tuple[web.AppRunner, str]:
    """A loopback server answering every POST with ``status`` and a JSON error body."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=b'{"errorCode": "GENERAL"}')

    app = web.Application()
    app.router.add_post("/", handler)
    return await serve(app)


@pytest.mark.parametrize("status", [400, 401, 429, 503])
async def test_callers_raise_for_status_session_still_returns_the_answer(status: int) -> None:
    """With session=ClientSession(raise_for_status=True) an error status is an answer, not a reset."""
    runner, base = await status_server(status)
    session = aiohttp.ClientSession(raise_for_status=True)
    transport = AiohttpTransport(session=session)
    try:
        raw = await transport.request("POST", base + "/", {}, b"{}")
    finally:
        await transport.aclose()
        await session.close()
        await runner.cleanup()
    assert (status, b'{"errorCode": "GENERAL"}') == (raw.status, raw.body)


async def test_callers_session_without_decompression_still_decompresses() -> None:
    """A caller's session with auto_decompress=False still gets the body inflated."""
    runner, base = await compressed_server(gzip.compress(b'{"tid": "t"}'), "gzip")
    session = aiohttp.ClientSession(auto_decompress=False)
    transport = AiohttpTransport(session=session)
    try:
        raw = await transport.request("GET", base + "/", {}, None)
    finally:
        await transport.aclose()
        await session.close()
        await runner.cleanup()
    assert b'{"tid": "t"}' == raw.body


@pytest.mark.parametrize("pool", [{"limit": 4}, {"limit_per_host": 4}])
async def test_callers_session_with_a_smaller_pool_is_refused(pool: dict[str, int]) -> None:
    """A session whose pool holds fewer than max_connections would time attempts out in its queue."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(**pool))  # type: ignore[arg-type]
    try:
        with pytest.raises(ValidationError, match="max_connections") as info:
            AiohttpTransport(session=session, limits=Limits(max_connections=8))
    finally:
        await session.close()
    assert "session" == info.value.field


async def test_client_refuses_a_session_with_a_smaller_pool() -> None:
    """MXOClient(session=...) refuses the mismatch when it is built, before any request."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=10))
    try:
        with pytest.raises(ValidationError, match="limit=10"):
            MXOClient("https://eu2.thunderhead.com", "S", "id", "secret", session=session)
    finally:
        await session.close()


@pytest.mark.parametrize("limit", [0, 8, 100])
async def test_callers_session_with_a_large_enough_pool_is_accepted(
    limit: int, server: tuple[str, list[web.Request]]
) -> None:
    """A pool of at least max_connections (0: unlimited) is accepted and used."""
    base, _ = server
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))
    transport = AiohttpTransport(session=session, limits=Limits(max_connections=8))
    try:
        raw = await transport.request("POST", base + "/ok", {}, b"{}")
    finally:
        await transport.aclose()
        await session.close()
    assert 201 == raw.status


# -- User-Agent (issue 13, item 14) ------------------------------------------------------------


async def test_request_without_user_agent_sends_ours(
    transport: AiohttpTransport, server: tuple[str, list[web.Request]]
) -> None:
    """A request carrying no User-Agent (the token request) sends mxo-async/<version>, not aiohttp's."""
    base, seen = server
    await transport.request("POST", base + "/ok", {"Accept": "application/json"}, b"{}")
    assert f"mxo-async/{mxo_async.__version__}" == seen[0].headers["User-Agent"]


async def test_request_with_a_user_agent_keeps_it(
    transport: AiohttpTransport, server: tuple[str, list[web.Request]]
) -> None:
    """A User-Agent the caller set is sent as it is."""
    base, seen = server
    await transport.request("POST", base + "/ok", {"User-Agent": "custom/1"}, b"{}")
    assert "custom/1" == seen[0].headers["User-Agent"]


async def test_token_and_api_requests_send_the_package_user_agent() -> None:
    """Through MXOClient, the token request and the API request both send mxo-async/<__version__>."""
    agents: dict[str, str] = {}

    async def token(request: web.Request) -> web.Response:
        agents["token"] = request.headers.get("User-Agent", "")
        return web.json_response({"access_token": "tok", "expires_in": 3600})

    async def activity(request: web.Request) -> web.Response:
        agents["api"] = request.headers.get("User-Agent", "")
        return web.json_response({"tid": "t-1", "errors": []})

    app = web.Application()
    app.router.add_post("/one/oauth2token", token)
    app.router.add_post("/one/oauth2/rt/api/3.1.0/customer/S/activity", activity)
    runner, base = await serve(app)
    try:
        async with MXOClient(base, "S", "id", "secret") as client:
            await client.send_activity(Customer.by_key("k"), "atm://a", Activity("p", "t"))
    finally:
        await runner.cleanup()
    expected = f"mxo-async/{mxo_async.__version__}"
    assert {"token": expected, "api": expected} == agents


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


async def test_no_aiohttp_object_is_reachable_from_our_errors() -> None:
    """A connection failure's MXOError chains to no aiohttp exception (they hold the request)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    transport = AiohttpTransport(limits=Limits(), timeouts=Timeouts())
    try:
        with pytest.raises(TransportError) as caught:
            await transport.request(
                "POST", f"http://127.0.0.1:{port}/x", {"Authorization": "Bearer tok"}, b"{}"
            )
    finally:
        await transport.aclose()
    modules = [type(error).__module__ for error in _chain(caught.value)]
    assert [] == [module for module in modules if module.startswith("aiohttp")]
    assert caught.value.__context__ is None
