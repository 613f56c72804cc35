"""The transport seam: one method to send a request, plus ``aclose``.

This is the only module that imports the aiohttp client. Everything above it sees
:class:`RawResponse` values and the library's own exceptions.

- **Body limit.** ``max_body`` (4 MiB) bounds the body as the caller gets it, *decompressed*: we
  accept gzip and deflate (aiohttp asks for them), and a 510 KiB gzip body can inflate to 512 MiB.
  A compressed body, or one of unknown length, is read in pieces and refused with a
  ``TransportError`` (``request_sent=True``: the server may have acted on the request, as for any
  other unreadable answer) as soon as it passes the limit; a plain body whose ``Content-Length``
  is over the limit is refused before it is read.
- **A caller's session** keeps its connector, cookies and default headers, but never changes what
  an answer means: every request passes ``raise_for_status=False`` (else a 429 or 401 would
  surface as an aiohttp exception, read as a reset: no retry, no token refresh), no redirects,
  decompression on and our timeouts. Its pool must hold ``Limits.max_connections`` connections:
  the attempt limit runs from the moment a request asks for a connection, so a smaller pool would
  make attempts time out while they wait for one and report sent requests that never left. A
  smaller pool is refused when the transport is built (``ValidationError``); a pool the caller
  shares with other traffic can still make us wait, and that wait counts.
- **User-Agent.** Every request that carries none (the token request) gets
  ``mxo-async/<version>`` (``_version.__version__``, the one place it is written), not aiohttp's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections.abc import Mapping
from typing import Protocol

import aiohttp
import attrs
from multidict import CIMultiDict
from yarl import URL

from ._config import Limits, Timeouts
from ._errors import TimeoutError as MXOTimeoutError
from ._errors import TransportError, ValidationError
from ._version import __version__
from ._watchdog import AttemptTimeout, Watchdog

__all__ = ["AiohttpTransport", "ClientSession", "RawResponse", "Transport"]

ClientSession = aiohttp.ClientSession  # re-exported so the client can type its session= argument

DEFAULT_MAX_BODY = 4 * 1024 * 1024
_MAX_URLS = 16  # parsed URLs kept: a client has four (activity, structure, delete, token)


@attrs.define
class RawResponse:
    """Status, headers and the whole body of a response (treated as immutable; not ``frozen``
    because one is built per request and frozen attrs classes cost an ``object.__setattr__``
    per field)."""

    status: int
    headers: Mapping[str, str] = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)


class Transport(Protocol):
    """What the client needs from HTTP: send one request, get the whole response back."""

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        time_left: float | None = None,
    ) -> RawResponse:
        """Send a request; ``time_left`` (seconds to the call deadline) may shorten the total timeout."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class AiohttpTransport:
    """A :class:`Transport` over one ``aiohttp.ClientSession``.

    The session is created lazily inside the running loop, unless the caller passes their own
    (which is then never closed here).
    """

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        timeouts: Timeouts | None = None,
        ssl: ssl_module.SSLContext | None = None,
        session: aiohttp.ClientSession | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self._limits = limits or Limits()
        timeouts = timeouts or Timeouts()
        # aiohttp enforces only what needs its internals: the socket connect (new connections
        # only) and, when asked for, the read inactivity limit. The per-attempt total is the
        # watchdog's, which serves every attempt in flight with one loop timer.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=timeouts.connect, sock_read=timeouts.read
        )
        self._total = timeouts.total
        self._watchdog = Watchdog()
        self._ssl: ssl_module.SSLContext | bool = ssl if ssl is not None else True
        self._session = session
        self._owns_session = session is None
        self._request_options: dict[str, object] = {"allow_redirects": False}
        if session is not None:
            _check_pool(session, self._limits.max_connections)
            # What our own session is built with, per request: the caller's session may say
            # otherwise (module docstring). Its connector stays, so our ssl= applies per request.
            self._request_options.update(
                raise_for_status=False, auto_decompress=True, timeout=self._timeout
            )
            if ssl is not None:
                self._request_options["ssl"] = ssl
        self._user_agent = f"mxo-async/{__version__}"
        self._max_body = max_body
        self._urls: dict[str, URL] = {}
        self._last_headers: Mapping[str, str] = {}
        self._last_multidict: CIMultiDict[str] = CIMultiDict()
        self._closed = False

    @property
    def holds_session(self) -> bool:
        """True while this transport owns an open session (so closing it matters)."""
        return self._owns_session and self._session is not None and not self._session.closed

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` ran."""
        return self._closed

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise TransportError("the client is closed", request_sent=False)
        session = self._session
        if session is None:
            connector = aiohttp.TCPConnector(
                # One connection beyond the throttle's max: the token request bypasses the
                # throttle, and must not wait for a pooled connection against its time limit.
                limit=self._limits.max_connections + 1,
                limit_per_host=0,
                ssl=self._ssl,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=True,
                raise_for_status=False,
                # Our URLs are built and percent-encoded by the wire module: send them as they are.
                requote_redirect_url=False,
            )
            self._session = session
        return session

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        time_left: float | None = None,
    ) -> RawResponse:
        """Send one request and read the whole response (at most ``max_body`` bytes)."""
        session = self._session
        if session is None or self._closed:
            session = self._get_session()
        limit = self._total
        if time_left is not None and (limit is None or time_left < limit):
            limit = max(time_left, 0.001)
        attempt_limit = (
            self._watchdog.limit(limit) if limit is not None else contextlib.nullcontext()
        )
        failure: BaseException | None = None
        try:
            with attempt_limit:
                # Awaited rather than used as a context manager (which adds four coroutine frames
                # per request); release() in the finally does what its __aexit__ would.
                response = await session.request(
                    method,
                    self._url(url),
                    headers=self._multidict(headers),
                    data=body,
                    **self._request_options,  # type: ignore[arg-type]
                )
                try:
                    length = response.content_length
                    if length is not None and length > self._max_body:
                        raise TransportError(
                            f"response body of {length} bytes exceeds the "
                            f"{self._max_body}-byte limit"
                        )
                    if length is None or "Content-Encoding" in response.headers:
                        # Content-Length counts compressed bytes: inflated bytes are counted
                        # while reading.
                        data = await self._read_bounded(
                            response, "Content-Encoding" in response.headers
                        )
                    else:
                        data = await response.read()
                    return RawResponse(response.status, response.headers, data)
                finally:
                    response.release()
        except AttemptTimeout as exc:
            failure = MXOTimeoutError(f"{method}: {exc}")
        except (asyncio.CancelledError, Exception) as exc:
            failure = _translate(method, exc)
            if failure is exc:
                raise
        # Raised outside the except block, so that it carries no __context__: aiohttp's
        # exceptions hold the request (its Authorization header among them).
        raise failure

    def _url(self, url: str) -> URL:
        """The parsed URL, kept per URL string: a client sends to a few fixed URLs (the contract
        puts no customer data in them), and yarl caches what aiohttp reads of it per object."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _MAX_URLS:
                self._urls.clear()
            parsed = self._urls[url] = URL(url, encoded=True)  # encoded by the wire module
        return parsed

    def _multidict(self, headers: Mapping[str, str]) -> CIMultiDict[str]:
        """``headers`` (with our User-Agent unless it names one) as the CIMultiDict aiohttp
        would build from them on every request; the last one is kept, with a reference to its
        source, since API requests reuse one header dict per token."""
        if headers is not self._last_headers:
            multidict = CIMultiDict(headers)
            if "User-Agent" not in multidict:
                multidict["User-Agent"] = self._user_agent
            self._last_headers, self._last_multidict = headers, multidict
        return self._last_multidict

    async def _read_bounded(self, response: aiohttp.ClientResponse, compressed: bool) -> bytes:
        """Read a body of unknown (or compressed) length, stopping past ``max_body`` bytes.

        aiohttp inflates a compressed body in bounded pieces as we read it, so memory stays
        within the limit plus a few buffers, however far the body would inflate.
        """
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self._max_body:
                what = "decompressed response body" if compressed else "response body"
                raise TransportError(f"{what} exceeds the {self._max_body}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        self._closed = True
        self._watchdog.close()
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()


def _check_pool(session: aiohttp.ClientSession, max_connections: int) -> None:
    """Refuse a caller's session whose pool is smaller than ``max_connections`` (module doc)."""
    connector = session.connector
    if connector is None:
        return
    for name in ("limit", "limit_per_host"):
        pool: int = getattr(connector, name)
        if 0 < pool < max_connections:
            raise ValidationError(
                "session",
                f"its connector's {name}={pool} is below Limits.max_connections="
                f"{max_connections}: attempts would time out waiting for a connection; pass "
                f"Limits(max_connections={pool}) or a session with a larger pool",
            )


def _translate(method: str, exc: BaseException) -> BaseException:
    """aiohttp's exceptions as the library's; anything else (ours, cancellation) as it is."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
        return _connect_error(exc)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return MXOTimeoutError(f"{method} timed out waiting for the server: {_describe(exc)}")
    if isinstance(exc, aiohttp.InvalidURL):
        return ValidationError("base_url", "is not a valid URL")
    if isinstance(exc, aiohttp.ClientError):
        return TransportError(f"{method} failed: {_describe(exc)}")
    return exc


def _connect_error(exc: Exception) -> TransportError:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return MXOTimeoutError("timed out connecting to the server", request_sent=False)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return TransportError(
            f"TLS certificate verification failed: {exc.certificate_error}", request_sent=False
        )
    return TransportError(f"cannot connect: {_describe(exc)}", request_sent=False)


def _describe(exc: BaseException) -> str:
    """The exception's type and message; aiohttp messages carry no headers or query strings."""
    text = str(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        text = f"{exc.host}:{exc.port}: {exc.os_error.strerror or type(exc.os_error).__name__}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
