"""Run the emulator: an async context manager for tests, a blocking runner for the command line."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from urllib.parse import quote

from aiohttp import web

from ._app import API_ROOT, TOKEN_PATH, EmulatorState, make_app
from ._config import Counters, EmulatorConfig
from ._faults import Faults
from ._store import StoredCustomer

__all__ = ["Emulator", "run_emulator"]


class Emulator:
    """An MXO tenant on loopback implementing docs/wire-contract.md (contract v2) over an in-memory store.

    Use ``async with Emulator(config) as emu:``; ``port=0`` picks a free port. ``clock`` (a monotonic
    clock in seconds) decides token expiry and the rate cap; inject one to test expiry without waiting.
    ``now`` (wall-clock time, aware) stamps activities sent without a timestamp and decides which
    timestamps are in the future.
    With ``ssl_context`` (a server-side :class:`ssl.SSLContext` holding a certificate, e.g. one issued
    by ``trustme``) it serves HTTPS and ``base_url`` starts with ``https://``.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        ssl_context: ssl.SSLContext | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(
                f"ssl_context must be an ssl.SSLContext, got {type(ssl_context).__name__}"
            )
        self._config = config if config is not None else EmulatorConfig()
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        if now is None:
            self._state = EmulatorState(self._config, clock=clock)
        else:
            self._state = EmulatorState(self._config, clock=clock, now=now)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    def __repr__(self) -> str:
        where = self._base_url or "not started"
        return f"<Emulator {where} site_key={self._config.site_key!r}>"

    async def start(self) -> None:
        """Bind the port and start serving."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        runner = web.AppRunner(
            make_app(self._state), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "http" if self._ssl_context is None else "https"
        self._base_url = f"{scheme}://{host}:{port}"

    async def close(self) -> None:
        """Stop serving and close every connection. Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://host:port`` (``https://`` with an ``ssl_context``) of the running emulator."""
        if self._base_url is None:
            raise RuntimeError("the emulator has not been started")
        return self._base_url

    @property
    def token_url(self) -> str:
        """The token endpoint: ``base_url + "/one/oauth2token"``."""
        return self.base_url + TOKEN_PATH

    def api_root(self, api_version: str = "3.1.0") -> str:
        """The API root URL for this emulator's site key."""
        path = API_ROOT.format(api_version=api_version, site_key=quote(self.site_key, safe=""))
        return self.base_url + path

    @property
    def config(self) -> EmulatorConfig:
        """The configuration the emulator was started with (faults may have changed since)."""
        return self._config

    @property
    def site_key(self) -> str:
        return self._config.site_key

    @property
    def client_id(self) -> str:
        return self._config.client_id

    @property
    def client_secret(self) -> str:
        return self._config.client_secret

    @property
    def faults(self) -> Faults:
        """The faults injected from now on; assign a new :class:`Faults` to reconfigure."""
        return self._state.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults instance, got {type(faults).__name__}")
        self._state.faults = faults

    @property
    def counters(self) -> Counters:
        """Live counters of what was received, applied and injected."""
        return self._state.counters

    @property
    def in_flight(self) -> int:
        """API requests being handled right now, including ones whose client already gave up."""
        return self._state.in_flight

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far: API calls using them get 401."""
        self._state.revoke_tokens()

    def applied_activities(
        self, tid: str | None = None, *, key: str | None = None
    ) -> list[dict[str, str | None]]:
        """Stored activities in apply order, in wire form plus ``tid``, ``customerKey``, ``touchpoint``.

        ``timestamp`` is always present (the server's time when the request omitted it). Rejected
        activities (listed in a 200's ``errors``) were never stored; activities of deleted
        customers are gone. With ``tid`` or ``key``, only that customer's activities.
        """
        return self._state.store.activities(tid=tid, key=key)

    def customer(
        self,
        key: str | None = None,
        *,
        tid: str | None = None,
        identifiers: Mapping[str, str] | None = None,
    ) -> StoredCustomer | None:
        """A snapshot of the stored customer with this key (or identifier, or TID), or ``None``.

        ``identifiers`` maps attribute API names to values; the key and identifiers are looked up
        before the TID, as a request's are.
        """
        store = self._state.store
        record = store.find(tid, self._pairs(key, identifiers))
        return None if record is None else store.snapshot(record)

    def _pairs(
        self, key: str | None, identifiers: Mapping[str, str] | None
    ) -> list[tuple[str, str]]:
        pairs = [] if key is None else [(self._config.key_attribute, key)]
        pairs.extend((identifiers or {}).items())
        return pairs

    def add_customer(
        self,
        key: str | None = None,
        *,
        tid: str | None = None,
        attributes: Mapping[str, object] | None = None,
        identifiers: Mapping[str, str] | None = None,
    ) -> str:
        """Seed a customer (created, found or linked as an activity would) and merge ``attributes``.

        ``identifiers`` maps further attribute API names to values. Attributes appear in the
        ``customerProfile`` structure; a ``tier`` attribute overrides the computed tier. Returns
        the customer's TID.
        """
        pairs = self._pairs(key, identifiers)
        if not pairs and tid is None:
            raise ValueError("add_customer needs a key, an identifier or a tid")
        record, chosen = self._state.store.resolve(tid, pairs)
        record.attributes.update(attributes or {})
        return chosen


async def _serve(config: EmulatorConfig, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available on every platform; Ctrl-C still works there.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with Emulator(config, host=host, port=port) as emu:
        print(
            f"MXO emulator listening on {emu.base_url} "
            f"(site key {config.site_key}, client id {config.client_id}, token URL {emu.token_url})",
            flush=True,
        )
        if config.client_secret == EmulatorConfig().client_secret:
            # The built-in secret protects nothing: saying it is what lets a user connect.
            print(f"client secret: {config.client_secret} (the built-in test secret)", flush=True)
        await stop.wait()


class EmulatorStartError(Exception):
    """The emulator could not listen (address in use, not permitted, unknown host)."""


def run_emulator(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve until SIGINT or SIGTERM, after printing the URL on stdout. Blocks.

    Raises:
        EmulatorStartError: it could not listen on ``host:port``, with a one-line reason.
    """
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(config, host, port))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use (another emulator? pick another --port, or 0)"
        raise EmulatorStartError(f"cannot listen on {host}:{port}: {reason}") from None
