"""One attempt of a call: throttle slot → token → transport (with the attempt's time limit) →
decipher. What an answer means is decided by the call's decipher function (``_wire``); this
module only acts on it: a 401 drops the token and replays once, an overload tells the throttle.

Two senders share the shape ``send(call) -> result``: :class:`ApiSender` for the three API calls
and :class:`PlainSender` for the token request, which is neither throttled nor authorized, so the
token request never re-enters the API call path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import attrs

from ._auth import Token, TokenManager
from ._clock import Clock
from ._errors import APIStatusError, ClientClosedError, MXOError, UnauthorizedError
from ._errors import TimeoutError as MXOTimeoutError
from ._events import EventHandler, RequestSent, ResponseReceived
from ._models import Customer
from ._secrets import Secrets
from ._throttle import Signal, Throttle
from ._transport import Transport
from ._wire import WireRequest

__all__ = [
    "MIN_ATTEMPT_TIME",
    "ApiSender",
    "Call",
    "Decipher",
    "Operation",
    "PlainSender",
    "Sender",
]

logger = logging.getLogger("mxo_async")

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")

# What an answer means (a function of ``_wire``): status, headers, body, now → result, or raise.
Decipher = Callable[[int, Mapping[str, str], bytes, datetime], R]

# An attempt is never started with less time than this before the call's deadline: one that
# could only time out would turn a call that was certainly not sent into an ambiguous one.
MIN_ATTEMPT_TIME = 0.5
_OVERLOAD = frozenset({429, 503})


@attrs.frozen
class Operation:
    """A kind of call: its name (in events and logs) and whether replaying it is safe."""

    name: str
    idempotent: bool


class Call(Generic[R]):
    """One logical call in progress: what it sends, how to read the answer, and its history.

    A plain class whose history fields default on the class: one is made per call, and a
    generated ``__init__`` storing all eleven fields measurably slows every request.
    """

    deadline: float | None = None  # on the client's clock
    attempts: int = 0
    rate_limited: int = 0  # attempts answered 429
    maybe_applied: bool = False  # some attempt may have reached MXO and been applied
    replayed_401: bool = False
    token_failed: bool = False  # the token request failed: this call's request was not sent
    pending_failure: MXOError | None = None  # see Caller.run

    def __init__(
        self,
        operation: Operation,
        request: WireRequest,
        decipher: Decipher[R],
        customer: Customer | None = None,
    ) -> None:
        self.operation = operation
        self.request = request
        self.decipher = decipher
        self.customer = customer


class Sender(Protocol[R_co]):
    """Makes one attempt of a call."""

    async def send(self, call: Call[Any]) -> Any: ...


class PlainSender:
    """An attempt without throttle or token: the token request itself."""

    def __init__(
        self,
        transport: Transport,
        clock: Clock,
        *,
        stats: Any,
        secrets: Secrets,
        on_event: EventHandler | None = None,
    ) -> None:
        self._transport = transport
        self._clock = clock
        self._stats = stats
        self._secrets = secrets
        self._on_event = on_event

    async def send(self, call: Call[R]) -> R:
        call.attempts += 1
        self._stats.requests += 1
        request = call.request
        if self._on_event is not None:
            _sent(call, self._on_event)
        started = self._clock.now()
        response = await self._transport.request(
            request.method,
            request.url,
            request.headers,
            request.body,
            None if call.deadline is None else call.deadline - started,
        )
        if self._on_event is not None or logger.isEnabledFor(logging.DEBUG):
            _received(call, response.status, self._clock.now() - started, self._on_event)
        try:
            return call.decipher(
                response.status, response.headers, response.body, self._clock.wall()
            )
        except MXOError as error:  # a token endpoint's error page can echo the credentials
            scrubbed = self._secrets.scrub(error)
            if scrubbed is error:
                raise
            raise scrubbed from None


class ApiSender:
    """An attempt of an API call, through the client's throttle and with its access token."""

    def __init__(
        self,
        transport: Transport,
        tokens: TokenManager,
        throttle: Throttle,
        clock: Clock,
        *,
        max_pause: float,
        stats: Any,
        secrets: Secrets,
        on_event: EventHandler | None = None,
    ) -> None:
        self._transport = transport
        self._tokens = tokens
        self.closed = False
        """Set when the client closes: later calls, and calls waiting for a token, fail."""
        self._throttle = throttle
        self._clock = clock
        self._max_pause = max_pause
        self._stats = stats
        self._on_event = on_event
        self._secrets = secrets
        self._last_token: Token | None = None
        self._authorized: tuple[Mapping[str, str], Token, Mapping[str, str]] | None = None

    async def send(self, call: Call[R]) -> R:
        if self.closed:
            raise ClientClosedError()
        throttle = self._throttle
        if not throttle.try_acquire():
            await self._before_deadline(call, throttle.acquire(), "waiting for the throttle")
        signal = Signal.OTHER
        try:
            # The token is read after the throttle wait, which can be long: a token taken
            # before it could expire in the queue and cost a 401 and a replay.
            token = self._tokens.peek() or await self._token(call)
            request = call.request
            while True:
                left, started = self._start_attempt(call)
                response = await self._transport.request(
                    request.method,
                    request.url,
                    self._authorize(request.headers, token),
                    request.body,
                    left,
                )
                status = response.status
                statuses = self._stats.statuses
                statuses[status] = statuses.get(status, 0) + 1
                if self._on_event is not None or logger.isEnabledFor(logging.DEBUG):
                    _received(call, status, self._clock.now() - started, self._on_event)
                try:
                    result = call.decipher(
                        status, response.headers, response.body, self._clock.wall()
                    )
                except UnauthorizedError:
                    if call.replayed_401:
                        raise
                    # The token expired or was revoked: drop it (unless a newer one replaced it
                    # already) and replay once with a fresh one.
                    call.replayed_401 = True
                    self._stats.token_replays += 1
                    self._tokens.invalidate(token)
                    token = await self._token(call)
                    continue
                except APIStatusError as error:
                    signal = self._overload_signal(error)
                    scrubbed = self._secrets.scrub(error)
                    if scrubbed is error:
                        raise
                    raise scrubbed from None
                except MXOError:
                    signal = Signal.OK  # MXO answered: what it said is the caller's business
                    raise
                signal = Signal.OK
                return result
        finally:
            throttle.release(signal)

    def _start_attempt(self, call: Call[Any]) -> tuple[float | None, float]:
        """Count the attempt about to leave and give its time left; never start one too short."""
        started = self._clock.now()
        left = None if call.deadline is None else call.deadline - started
        if left is not None and left < MIN_ATTEMPT_TIME:
            raise MXOTimeoutError(
                f"{call.operation.name}: the call's deadline came before it could be sent",
                request_sent=False,
            )
        call.attempts += 1
        self._stats.requests += 1
        if self._on_event is not None:
            _sent(call, self._on_event)
        return left, started

    def _authorize(self, base: Mapping[str, str], token: Token) -> Mapping[str, str]:
        """``base`` with the token's Authorization header.

        Every API request carries the same base headers (the client's one header set), so the
        authorized copy is made once per token and base, not per request: the transport then
        sees the same dict and keeps its converted form (benchmarks/README.md, "Tricks").
        """
        cached = self._authorized
        if cached is not None and cached[0] is base and cached[1] is token:
            return cached[2]
        if token is not self._last_token:
            self._last_token = token
            self._secrets.add_token(token.value)  # once per token: its echoes are redacted too
        headers = {**base, "Authorization": token.authorization}
        self._authorized = (base, token, headers)
        return headers

    async def _token(self, call: Call[Any]) -> Token:
        try:
            return await self._before_deadline(call, self._tokens.get(), "waiting for a token")
        except MXOError:
            call.token_failed = True  # its own request was never sent: never ambiguous
            raise
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.closed and task is not None and not task.cancelling():
                # aclose() cancelled the token request this call waited for; nobody cancelled
                # the caller, so it gets an error it can handle, not a CancelledError.
                call.token_failed = True
                raise ClientClosedError(
                    "the client was closed while the call waited for a token; not sent"
                ) from None
            raise

    async def _before_deadline(self, call: Call[Any], waiting: Awaitable[T], what: str) -> T:
        """Await ``waiting``, but give up (not sent) in time to leave an attempt its minimum."""
        left = _time_left(call, self._clock)
        if left is None:
            return await waiting
        try:
            async with self._clock.timeout(max(0.0, left - MIN_ATTEMPT_TIME)):
                return await waiting
        except TimeoutError:
            raise MXOTimeoutError(
                f"{call.operation.name}: the call's deadline came while {what}; not sent",
                request_sent=False,
            ) from None

    def _overload_signal(self, error: APIStatusError) -> Any:
        if error.status not in _OVERLOAD:
            return Signal.OTHER
        if error.retry_after is None:
            return Signal.OVERLOADED
        self._throttle.pause(min(error.retry_after, self._max_pause))
        return Signal.PAUSED


def _sent(call: Call[Any], on_event: EventHandler) -> None:
    request = call.request
    customer = call.customer.masked() if call.customer is not None else ""
    on_event(
        RequestSent(call.operation.name, request.method, request.path, call.attempts, customer)
    )


def _received(call: Call[Any], status: int, elapsed: float, on_event: EventHandler | None) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        customer = call.customer.masked() if call.customer is not None else "-"
        logger.debug(
            "%s %s [%s] attempt %d -> %d in %.1f ms",
            call.request.method,
            call.operation.name,
            customer,
            call.attempts,
            status,
            elapsed * 1000,
        )
    if on_event is not None:
        on_event(ResponseReceived(call.operation.name, status, call.attempts, elapsed))


def _time_left(call: Call[Any], clock: Clock) -> float | None:
    return None if call.deadline is None else call.deadline - clock.now()
