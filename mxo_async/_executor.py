"""Runs one logical call: authorize → throttle → send → classify, retrying with tenacity.

The first attempt runs without any retry machinery (most calls succeed at once); only after a
failure does tenacity take over, starting by re-judging that first failure.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

import attrs
from tenacity import AsyncRetrying, RetryCallState

from ._auth import Token, TokenManager
from ._config import Timeouts
from ._errors import (
    AmbiguousDeliveryError,
    APIStatusError,
    MXOError,
    RateLimitedError,
    UnauthorizedError,
)
from ._events import EventHandler, RequestSent, ResponseReceived, RetryScheduled
from ._models import Customer
from ._retry import Decision, RetryBudget, RetryPolicy, backoff_delay, classify, maybe_applied
from ._throttle import OK, OTHER, OVERLOADED, PAUSED, Throttle, ThrottleStats
from ._transport import Transport
from ._wire import WireRequest

__all__ = ["CallStats", "ClientStats", "Decipher", "Executor", "Operation"]

R = TypeVar("R")
# What a response means (a function of ``_wire``): status, headers, body, now → result or raise.
Decipher = Callable[[int, Mapping[str, str], bytes, datetime], R]

logger = logging.getLogger("mxo_async")

_OVERLOAD = frozenset({429, 503})
_MAX_HEADER_SETS = 8  # distinct header dicts with a cached Authorization copy


@attrs.frozen
class Operation:
    """A kind of call: its name and whether replaying it is safe.

    One per endpoint (module constants in the client); each call pairs it with its request and
    the function that deciphers its answer.
    """

    name: str
    idempotent: bool
    authenticated: bool = True  # False only for the token request itself
    throttled: bool = True  # the token request bypasses the API's throttle


@attrs.define
class CallStats:
    """Client-wide counters (a snapshot is exposed by ``MXOClient.stats``)."""

    calls: int = 0
    requests: int = 0
    retries: int = 0
    failures: int = 0
    ambiguous: int = 0
    token_replays: int = 0
    statuses: dict[int, int] = attrs.field(factory=dict)


@attrs.frozen
class ClientStats:
    """A snapshot of a client's counters."""

    calls: int
    requests: int
    retries: int
    failures: int
    ambiguous: int
    token_requests: int
    token_replays: int
    statuses: Mapping[int, int]
    retry_budget: float
    throttle: ThrottleStats


class _Call:
    """One call in progress: what it sends and its bookkeeping across attempts.

    A plain class whose counters default on the class: one is made per call, and a generated
    ``__init__`` would store all nine attributes instead of three.
    """

    attempts: int = 0
    rate_limited: int = 0
    maybe_applied: bool = False
    replayed_401: bool = False
    token_failed: bool = False  # the token request failed: this call's own request was not sent
    next_delay: float = 0.0

    def __init__(
        self, request: WireRequest, customer: Customer | None, deadline: float | None
    ) -> None:
        self.request = request
        self.customer = customer
        self.deadline = deadline


class Executor:
    """Executes :class:`Operation` values over a :class:`Transport`."""

    def __init__(
        self,
        transport: Transport,
        tokens: TokenManager,
        throttle: Throttle,
        policy: RetryPolicy,
        timeouts: Timeouts,
        *,
        sleep: Callable[[float], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        on_event: EventHandler | None = None,
        secrets: Callable[[], tuple[str, ...]] = tuple,
    ) -> None:
        self._transport = transport
        self._tokens = tokens
        self._throttle = throttle
        self._policy = policy
        self._deadline = timeouts.deadline
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._on_event = on_event
        self._secrets = secrets
        self.budget = RetryBudget(policy)
        self.stats = CallStats()
        self._auth_token: Token | None = None
        self._auth_headers: dict[int, tuple[Mapping[str, str], dict[str, str]]] = {}

    async def execute(
        self,
        op: Operation,
        request: WireRequest,
        decipher: Decipher[R],
        customer: Customer | None = None,
    ) -> tuple[R, int]:
        """Send ``request`` as an ``op`` call, retrying as the policy allows; return what
        ``decipher`` made of the answer, with the number of attempts."""
        self.stats.calls += 1
        deadline = None if self._deadline is None else self._clock() + self._deadline
        call = _Call(request, customer, deadline)
        try:
            result = await self._attempt(op, call, decipher)
        except MXOError as first_error:
            return await self._retry(op, call, decipher, first_error)
        self.budget.refund()
        return result, call.attempts

    async def _retry(
        self, op: Operation, call: _Call, decipher: Decipher[R], first_error: MXOError
    ) -> tuple[R, int]:
        pending: list[MXOError] = [first_error]

        async def attempt() -> R:
            if pending:  # let tenacity judge the failure of the first, untracked attempt
                raise pending.pop()
            return await self._attempt(op, call, decipher)

        retrying = AsyncRetrying(
            retry=lambda rs: self._should_retry(op, call, rs),
            wait=lambda rs: call.next_delay,
            sleep=self._sleep,
            before_sleep=lambda rs: self._before_sleep(op, call, rs),
            reraise=True,
        )
        try:
            result: R = await retrying(attempt)
        except MXOError as error:
            final = self._final_error(op, call, error)
            if final is error:
                raise
            raise final from error
        self.budget.refund()
        return result, call.attempts

    def _should_retry(self, op: Operation, call: _Call, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        error = outcome.exception()
        if not isinstance(error, MXOError) or call.token_failed:
            return False  # a failed token request already ran its own retries
        if maybe_applied(error):
            call.maybe_applied = True
        if classify(error, idempotent=op.idempotent, policy=self._policy) is not Decision.RETRY:
            return False
        if isinstance(error, APIStatusError) and error.status == 429:
            # A rate limit is not a failure of the call: it has its own allowance, paced by the
            # throttle, so a client converging on a server's rate cap does not fail requests.
            call.rate_limited += 1
            if call.rate_limited >= self._policy.max_rate_limited_attempts:
                return False
        elif call.attempts - call.rate_limited >= self._policy.max_attempts:
            return False
        retry_after = error.retry_after if isinstance(error, APIStatusError) else None
        if retry_after is not None and retry_after > self._policy.max_retry_after:
            return False
        delay = backoff_delay(retry_state.attempt_number, self._policy, retry_after, self._rng)
        if call.deadline is not None and self._clock() + delay >= call.deadline:
            return False
        if not self.budget.withdraw(error):
            logger.warning("%s: retry budget exhausted, failing fast", op.name)
            return False
        call.next_delay = delay
        return True

    def _before_sleep(self, op: Operation, call: _Call, retry_state: RetryCallState) -> None:
        self.stats.retries += 1
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        reason = type(error).__name__ if error is not None else "unknown"
        if isinstance(error, APIStatusError):
            reason = f"HTTP {error.status}"
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s: attempt %d failed (%s), retrying in %.3f s",
                op.name,
                call.attempts,
                reason,
                call.next_delay,
            )
        if self._on_event is not None:
            self._on_event(RetryScheduled(op.name, call.attempts, call.next_delay, reason))

    def _final_error(self, op: Operation, call: _Call, error: MXOError) -> MXOError:
        self.stats.failures += 1
        final: MXOError = error
        if (
            isinstance(error, APIStatusError)
            and error.retry_after is not None
            and error.retry_after > self._policy.max_retry_after
            and not isinstance(error, RateLimitedError)
        ):
            final = RateLimitedError(error.status, error.message, error.retry_after)
        if maybe_applied(error) and not call.token_failed:
            call.maybe_applied = True
        if not op.idempotent and call.maybe_applied:
            self.stats.ambiguous += 1
            final = AmbiguousDeliveryError(
                f"{op.name} may or may not have been applied "
                f"after {call.attempts} attempt(s): {error}"
            )
        final.attempts = call.attempts
        return final

    async def _attempt(self, op: Operation, call: _Call, decipher: Decipher[R]) -> R:
        if op.throttled and not self._throttle.try_acquire():
            await self._throttle.acquire()
        signal = OTHER
        released = not op.throttled
        try:
            # The token is read after the throttle wait, which can be long: a token taken
            # before it could expire in the queue and cost a 401 and a replay.
            token = None
            if op.authenticated:
                token = self._tokens.peek()
                if token is None:
                    try:
                        token = await self._tokens.get()
                    except MXOError:
                        call.token_failed = True
                        raise
            call.attempts += 1
            self.stats.requests += 1
            request = call.request
            headers = request.headers
            if token is not None:
                headers = self._headers(headers, token)
            if self._on_event is not None:
                self._emit_sent(op, call)
            started = self._clock()
            time_left = None if call.deadline is None else call.deadline - started
            response = await self._transport.request(
                request.method, request.url, headers, request.body, time_left
            )
            status = response.status
            statuses = self.stats.statuses
            statuses[status] = statuses.get(status, 0) + 1
            if self._on_event is not None or logger.isEnabledFor(logging.DEBUG):
                self._emit_received(op, call, status, self._clock() - started)
            # Only error answers are quoted in messages: only they need the secrets taken out.
            body = response.body if status == 200 else self._redact(response.body)
            try:
                result = decipher(status, response.headers, body, self._wall_clock())
            except APIStatusError as error:
                if isinstance(error, UnauthorizedError) and token is not None:
                    if not call.replayed_401:
                        # The token expired or was revoked: drop it (if no one has yet) and
                        # replay once.
                        call.replayed_401 = True
                        self.stats.token_replays += 1
                        self._tokens.invalidate(token)
                        released = True
                        self._throttle.release(OTHER)
                        return await self._attempt(op, call, decipher)
                elif error.status in _OVERLOAD:
                    if error.retry_after is None:
                        signal = OVERLOADED
                    else:
                        signal = PAUSED
                        self._throttle.pause(min(error.retry_after, self._policy.max_retry_after))
                elif status == 200:
                    signal = OK  # the server worked; what it said is for the caller
                raise
            except MXOError:
                signal = OK  # an answer that was read: the server is not overloaded
                raise
            signal = OK
            return result
        finally:
            if not released:
                self._throttle.release(signal)

    def _headers(self, base: Mapping[str, str], token: Token) -> Mapping[str, str]:
        """``base`` plus the token's Authorization, built once per (header dict, token).

        The wire module hands out a few header dicts per client; the cache keeps each one it is
        keyed by alive (so its id cannot be reused) and is cleared when it holds more than a
        few, so a caller building header dicts per request cannot make it grow.
        """
        if token is not self._auth_token:
            self._auth_token = token
            self._auth_headers = {}
        entry = self._auth_headers.get(id(base))
        if entry is None or entry[0] is not base:
            if len(self._auth_headers) >= _MAX_HEADER_SETS:
                self._auth_headers.clear()
            entry = (base, {**base, "Authorization": token.authorization})
            self._auth_headers[id(base)] = entry
        return entry[1]

    def _redact(self, body: bytes) -> bytes:
        for secret in self._secrets():
            if secret:
                body = body.replace(secret.encode(), b"***")
        return body

    def _emit_sent(self, op: Operation, call: _Call) -> None:
        assert self._on_event is not None
        customer = call.customer.masked() if call.customer is not None else ""
        self._on_event(
            RequestSent(op.name, call.request.method, call.request.path, call.attempts, customer)
        )

    def _emit_received(self, op: Operation, call: _Call, status: int, elapsed: float) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            customer = call.customer.masked() if call.customer is not None else "-"
            logger.debug(
                "%s %s [%s] attempt %d -> %d in %.1f ms",
                call.request.method,
                op.name,
                customer,
                call.attempts,
                status,
                elapsed * 1000,
            )
        if self._on_event is not None:
            self._on_event(ResponseReceived(op.name, status, call.attempts, elapsed))
