"""MXOClient: the public face. Validates input, builds requests, runs them, parses answers."""

from __future__ import annotations

import os
import ssl as ssl_module
import warnings
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeAlias, TypeVar, overload

from ._auth import TokenManager
from ._batcher import Batcher
from ._calls import Caller, CallStats, ClientStats
from ._clock import Clock, SystemClock
from ._config import Limits, Timeouts, check_base_url, check_text
from ._errors import MXOError, ValidationError
from ._events import EventHandler, IsolatedCallback, isolated
from ._fanout import FanOut, Progress
from ._fleet import Coordinator, FleetLink, join_fleet
from ._journal import build_erasure_sweep
from ._models import (
    Activity,
    ActivityRequest,
    ActivityResult,
    Customer,
    Device,
    Erasure,
    Structure,
    check_customer,
    check_properties,
    check_structure_name,
    check_touchpoint,
)
from ._retry import RetryBudget, RetryPolicy
from ._secrets import Secrets
from ._sending import ApiSender, Call, Operation, PlainSender
from ._telemetry import TelemetryProvider, resolve
from ._throttle import Throttle
from ._transport import AiohttpTransport, ClientSession, Transport
from ._version import __version__
from ._wire import (
    CUSTOMER_KEY_API_NAME,
    DEFAULT_API_VERSION,
    Endpoints,
    TokenGrant,
    build_activity,
    build_delete,
    build_structure,
    build_token_request,
    decipher_activity,
    decipher_erasure,
    decipher_structure,
    decipher_token,
)

__all__ = ["JSON", "MXOClient"]

T = TypeVar("T")
JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"

_ENV = {
    "base_url": "MXO_BASE_URL",
    "site_key": "MXO_SITE_KEY",
    "client_id": "MXO_CLIENT_ID",
    "client_secret": "MXO_CLIENT_SECRET",
}
_ENV_OPTIONAL = {
    "token_url": "MXO_TOKEN_URL",
    "api_version": "MXO_API_VERSION",
    "customer_key_attribute": "MXO_CUSTOMER_KEY_ATTRIBUTE",
}
_SEND = Operation("send_activity", idempotent=False)
_STRUCTURE = Operation("get_structure", idempotent=True)
_DELETE = Operation("delete_customer", idempotent=True)
_TOKEN = Operation("token", idempotent=True)


class MXOClient:
    """An asyncio client for one MXO tenant and site.

    Use it as ``async with MXOClient(...) as client`` (or call :meth:`aclose`). One client holds
    one HTTP session, one access token and one throttle, shared by every call made through it.
    """

    def __init__(
        self,
        base_url: str,
        site_key: str,
        client_id: str,
        client_secret: str,
        *,
        token_url: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        customer_key_attribute: str = CUSTOMER_KEY_API_NAME,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
        session: ClientSession | None = None,
        ssl: ssl_module.SSLContext | None = None,
        on_event: EventHandler | None = None,
        allow_insecure_http: bool = False,
        token_lifetime: float = 3600.0,
        transport: Transport | None = None,
        clock: Clock | None = None,
        coordinator: Coordinator | None = None,
        telemetry: bool | TelemetryProvider | None = None,
    ) -> None:
        base = check_base_url(base_url, allow_insecure_http)
        check_text("site_key", site_key)
        check_text("client_id", client_id)
        check_text("client_secret", client_secret)
        check_text("api_version", api_version)
        check_text("customer_key_attribute", customer_key_attribute)
        if any(ch.isspace() for ch in customer_key_attribute):
            raise ValidationError(
                "customer_key_attribute", "an attribute API name contains no spaces"
            )
        if token_url is not None:
            token_url = check_base_url(token_url, allow_insecure_http, "token_url")
        if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
            raise ValidationError("ssl", "must be an ssl.SSLContext")
        self._client_id = client_id
        self._client_secret = client_secret
        self._secrets = Secrets(client_id, client_secret)
        self._endpoints = Endpoints(
            base,
            site_key,
            api_version,
            token_url or "",
            f"mxo-async/{__version__}",
            customer_key_attribute,
        )
        self._closed = False
        self._retry = retry or RetryPolicy()
        self._timeouts = timeouts or Timeouts()
        self._limits = limits or Limits()
        self._transport: Transport = transport or AiohttpTransport(
            limits=self._limits, timeouts=self._timeouts, ssl=ssl, session=session
        )
        self._clock = clock = clock or SystemClock()
        # Your callbacks can never change what the library does or reports (issue 13, item 1).
        self._on_event: IsolatedCallback | None = isolated(on_event, "on_event")
        # Telemetry (None when off, the default) observes the events before your callback does.
        self._telemetry = resolve(telemetry, self.target, clock)
        self._events = on_event = (
            self._on_event if self._telemetry is None else self._telemetry.listen(self._on_event)
        )
        self._tokens = TokenManager(
            self._fetch_token, default_lifetime=token_lifetime, on_event=on_event, clock=clock.now
        )
        self._throttle = Throttle(
            self._limits, on_event=on_event, clock=clock.now, sleep=clock.sleep
        )
        self._fleet: FleetLink | None = None
        if coordinator is not None:  # a fleet shares rate, pause and (opt-in) token
            self._fleet, self._tokens, self._throttle = join_fleet(
                coordinator, self._endpoints, client_id, self._limits, self._fetch_token,
                token_lifetime=token_lifetime, on_event=on_event, clock=clock,
            )  # fmt: skip
        self._stats = CallStats()
        self._budget = RetryBudget(self._retry)
        # Telemetry times each attempt at the transport: the senders build no event for it.
        transport = self._transport
        if self._telemetry is not None:
            transport = self._telemetry.transport(transport)
        self._sender = sender = ApiSender(
            transport,
            self._tokens,
            self._throttle,
            clock,
            max_pause=self._retry.max_retry_after,
            stats=self._stats,
            secrets=self._secrets,
            on_event=self._on_event,
        )
        # API calls and the token request share the retry policy, budget and counters; the
        # token request goes through its own sender (no throttle, no token): it never re-enters
        # the API call path.
        self._calls = self._caller(sender)
        self._token_calls = self._caller(
            PlainSender(
                transport, clock, stats=self._stats, secrets=self._secrets, on_event=self._on_event
            )
        )
        if self._telemetry is not None:
            self._telemetry.watch(self)

    def _caller(self, sender: ApiSender | PlainSender) -> Caller:
        return Caller(
            sender,
            self._retry,
            self._clock,
            budget=self._budget,
            stats=self._stats,
            deadline=self._timeouts.deadline,
            on_event=self._events,
            telemetry=self._telemetry,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> MXOClient:
        """Build a client from ``MXO_BASE_URL``, ``MXO_SITE_KEY``, ``MXO_CLIENT_ID``,
        ``MXO_CLIENT_SECRET`` and optionally ``MXO_TOKEN_URL``, ``MXO_API_VERSION`` and
        ``MXO_CUSTOMER_KEY_ATTRIBUTE``.

        Keyword ``overrides`` are passed to the constructor and win over the environment.
        """
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        for name, variable in {**_ENV, **_ENV_OPTIONAL}.items():
            if env.get(variable):
                kwargs[name] = env[variable]
        kwargs.update(overrides)
        for name, variable in _ENV.items():
            if name not in kwargs:
                raise ValidationError(variable, "environment variable is not set")
        return cls(**kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"MXOClient(base_url={self._endpoints.base_url!r}, "
            f"site_key={self._endpoints.site_key!r}, client_id={self._client_id!r})"
        )

    @property
    def target(self) -> dict[str, str]:
        """What this client talks to: base URL, site key, key attribute and API version.

        Erasure journals record it, and refuse to resume against another target.
        """
        endpoints = self._endpoints
        return {
            "base_url": endpoints.base_url,
            "site_key": endpoints.site_key,
            "customer_key_attribute": endpoints.customer_key_attribute,
            "api_version": endpoints.api_version,
        }

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> MXOClient:
        if self._fleet is not None:
            await self._fleet.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session (unless it was passed in) and stop background token refresh."""
        self._closed = True
        self._sender.closed = True
        if self._fleet is not None:
            await self._fleet.aclose()
        await self._tokens.aclose()
        await self._transport.aclose()

    @property
    def closed(self) -> bool:
        """True once the client was closed."""
        return self._closed

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        transport = getattr(self, "_transport", None)
        if isinstance(transport, AiohttpTransport) and transport.holds_session:
            _warn(
                "MXOClient was garbage-collected while open: use 'async with' or await aclose()",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    @property
    def stats(self) -> ClientStats:
        """Counters of calls, requests, retries and the throttle's state."""
        calls = self._stats
        return ClientStats(
            calls=calls.calls,
            requests=calls.requests,
            retries=calls.retries,
            failures=calls.failures,
            ambiguous=calls.ambiguous,
            token_requests=self._tokens.refreshes,
            token_replays=calls.token_replays,
            statuses=dict(calls.statuses),
            retry_budget=self._budget.available,
            throttle=self._throttle.stats,
            callback_errors=self._on_event.failures if self._on_event is not None else 0,
        )

    # -- the three calls -----------------------------------------------------------------------

    async def send_activity(
        self,
        customer: Customer,
        touchpoint: str,
        activities: Sequence[Activity] | Activity,
        properties: Mapping[str, str] | None = None,
        *,
        device: Device | None = None,
    ) -> ActivityResult:
        """Send activities of one customer at one touchpoint.

        Raises :class:`RejectedActivitiesError` when MXO answered but did not process some of
        them (the others were stored; never retried). Not idempotent: a failure after the
        request may have been applied raises :class:`AmbiguousDeliveryError` unless
        ``RetryPolicy(retry_ambiguous=True)``.
        """
        request = ActivityRequest(
            check_customer(customer),
            touchpoint,
            activities,  # type: ignore[arg-type]  # the converter accepts a lone Activity
            properties or {},
            device,
        )
        result, _ = await self._send_counted(request)
        return result

    async def send_request(self, request: ActivityRequest) -> ActivityResult:
        """Send a prepared :class:`ActivityRequest` (what fan-out and the batcher send)."""
        result, _ = await self._send_counted(request)
        return result

    @overload
    async def get_structure(
        self,
        customer: Customer,
        touchpoint: str,
        structure: str,
        properties: Mapping[str, str] | None = None,
        *,
        device: Device | None = None,
        into: None = None,
    ) -> Structure[dict[str, JSON]]: ...

    @overload
    async def get_structure(
        self,
        customer: Customer,
        touchpoint: str,
        structure: str,
        properties: Mapping[str, str] | None = None,
        *,
        device: Device | None = None,
        into: type[T],
    ) -> Structure[T]: ...

    async def get_structure(
        self,
        customer: Customer,
        touchpoint: str,
        structure: str,
        properties: Mapping[str, str] | None = None,
        *,
        device: Device | None = None,
        into: type[T] | None = None,
    ) -> Structure[dict[str, JSON]] | Structure[T]:
        """Read a published Pull Structure for one customer, with context properties.

        Returns a :class:`Structure` (name, TID, attributes): the attributes as a dict (MXO omits
        the root node), or as an instance of ``into`` (an attrs class) built by cattrs.
        """
        name = check_structure_name(structure)
        if device is not None and not isinstance(device, Device):
            raise ValidationError("device", f"must be a Device, got {type(device).__name__}")
        request = build_structure(
            self._endpoints,
            check_customer(customer),
            check_touchpoint(touchpoint),
            name,
            check_properties(properties),
            device,
        )

        def decipher(
            status: int, headers: Mapping[str, str], body: bytes, now: datetime
        ) -> Structure[Any]:
            return decipher_structure(status, headers, body, now, name, into)

        result, _ = await self._calls.run(Call(_STRUCTURE, request, decipher, customer))
        return result

    async def delete_customer(self, customer: Customer) -> Erasure:
        """Erase everything MXO stores for one customer (GDPR). Unknown → ``found=False``."""
        erasure, _ = await self._delete_counted(customer)
        return erasure

    # -- many calls ----------------------------------------------------------------------------

    def send_activities(
        self,
        requests: Iterable[ActivityRequest] | AsyncIterable[ActivityRequest],
        *,
        concurrency: int = 64,
        ordered: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> FanOut[ActivityRequest, ActivityResult]:
        """Stream many :class:`ActivityRequest` values through a bounded pool of workers.

        Use as ``async with client.send_activities(reqs) as outcomes: async for o in outcomes``.
        Every request ends in exactly one :class:`Outcome`.
        """
        return FanOut(
            requests,
            self._send_counted,
            concurrency=concurrency,
            ordered=ordered,
            on_progress=on_progress,
            telemetry=None
            if self._telemetry is None
            else self._telemetry.fan_out("send_activities"),
        )

    def delete_customers(
        self,
        customers: Iterable[Customer] | AsyncIterable[Customer],
        *,
        concurrency: int = 16,
        journal: str | os.PathLike[str] | None = None,
        ordered: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> FanOut[Customer, Erasure]:
        """Erase many customers; with ``journal`` the sweep is resumable and auditable."""
        return build_erasure_sweep(
            customers,
            self._delete_counted,
            concurrency=concurrency,
            journal=journal,
            target=self.target,
            ordered=ordered,
            on_progress=on_progress,
            telemetry=None
            if self._telemetry is None
            else self._telemetry.fan_out("delete_customers"),
        )

    def batcher(
        self,
        *,
        max_activities: int = 100,
        max_latency: float = 0.5,
        max_pending: int = 10_000,
        when_full: Literal["wait", "raise"] = "wait",
        max_concurrent_requests: int | None = None,
        on_error: Callable[[ActivityRequest, MXOError], None] | None = None,
    ) -> Batcher:
        """A batcher that coalesces activities of the same customer context into one request.

        Use as ``async with client.batcher() as batcher``; see :class:`Batcher`.
        """
        return Batcher(
            self.send_request,
            max_activities=max_activities,
            max_latency=max_latency,
            max_pending=max_pending,
            when_full=when_full,
            max_concurrent_requests=max_concurrent_requests,
            on_error=on_error,
            on_event=self._events,
            telemetry=self._telemetry,
            clock=self._clock,
        )

    # -- internals -----------------------------------------------------------------------------

    async def _send_counted(self, request: ActivityRequest) -> tuple[ActivityResult, int]:
        if not isinstance(request, ActivityRequest):
            raise ValidationError(
                "request", f"must be an ActivityRequest, got {type(request).__name__}"
            )
        call = Call(
            _SEND, build_activity(self._endpoints, request), decipher_activity, request.customer
        )
        return await self._calls.run(call)

    async def _delete_counted(self, customer: Customer) -> tuple[Erasure, int]:
        request = build_delete(self._endpoints, check_customer(customer))
        return await self._calls.run(Call(_DELETE, request, decipher_erasure, customer))

    async def _fetch_token(self) -> TokenGrant:
        request = build_token_request(
            self._endpoints.token_url, self._client_id, self._client_secret
        )
        grant, _ = await self._token_calls.run(Call(_TOKEN, request, decipher_token))
        return grant
