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

import attrs
from tenacity import AsyncRetrying, RetryCallState

from ._auth import Token, TokenManager
from ._config import Timeouts
from ._errors import (
    AmbiguousDeliveryError,
    APIStatusError,
    MXOError,
    RateLimitedError,
)
from ._events import EventHandler, RequestSent, ResponseReceived, RetryScheduled
from ._models import Customer
from ._retry import Decision, RetryBudget, RetryPolicy, backoff_delay, classify, maybe_applied
from ._throttle import Signal, Throttle, ThrottleStats
from ._transport import RawResponse, Transport
from ._wire import WireRequest, parse_error

__all__ = ["CallStats", "ClientStats", "Executor", "Operation"]

logger = logging.getLogger("mxo_async")

_OVERLOAD = frozenset({429, 503})
_SUCCESS = frozenset({200})


@attrs.define
class Operation:
    """One logical call: the request, how to judge its answer, and whether replay is safe.

    Treated as immutable; not ``frozen`` because one is built per call and frozen attrs classes
    pay an ``object.__setattr__`` per field (measurable on the hot path).
    """

    name: str
    request: WireRequest
    idempotent: bool
    customer: Customer | None = None
    accept: frozenset[int] = _SUCCESS  # statuses handed back to the caller to parse
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


@attrs.define
class _CallState:
    attempts: int = 0
    rate_limited: int = 0
    maybe_applied: bool = False
    replayed_401: bool = False
    token_failed: bool = False  # the token request failed: this call's own request was not sent
    deadline: float | None = None
    next_delay: float = 0.0


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
        self._auth_headers: dict[int, dict[str, str]] = {}

    async def execute(self, op: Operation) -> tuple[RawResponse, int]:
        """Run ``op`` to a response the caller parses; return it with the number of attempts."""
        self.stats.calls += 1
        state = _CallState()
        if self._deadline is not None:
            state.deadline = self._clock() + self._deadline
        try:
            response = await self._attempt(op, state)
        except MXOError as first_error:
            return await self._retry(op, state, first_error)
        self.budget.refund()
        return response, state.attempts

    async def _retry(
        self, op: Operation, state: _CallState, first_error: MXOError
    ) -> tuple[RawResponse, int]:
        pending: list[MXOError] = [first_error]

        async def attempt() -> RawResponse:
            if pending:  # let tenacity judge the failure of the first, untracked attempt
                raise pending.pop()
            return await self._attempt(op, state)

        retrying = AsyncRetrying(
            retry=lambda rs: self._should_retry(op, state, rs),
            wait=lambda rs: state.next_delay,
            sleep=self._sleep,
            before_sleep=lambda rs: self._before_sleep(op, state, rs),
            reraise=True,
        )
        try:
            response: RawResponse = await retrying(attempt)
        except MXOError as error:
            final = self._final_error(op, state, error)
            if final is error:
                raise
            raise final from error
        self.budget.refund()
        return response, state.attempts

    def _should_retry(self, op: Operation, state: _CallState, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        error = outcome.exception()
        if not isinstance(error, MXOError) or state.token_failed:
            return False  # a failed token request already ran its own retries
        if maybe_applied(error):
            state.maybe_applied = True
        if classify(error, idempotent=op.idempotent, policy=self._policy) is not Decision.RETRY:
            return False
        if isinstance(error, APIStatusError) and error.status == 429:
            # A rate limit is not a failure of the call: it has its own allowance, paced by the
            # throttle, so a client converging on a server's rate cap does not fail requests.
            state.rate_limited += 1
            if state.rate_limited >= self._policy.max_rate_limited_attempts:
                return False
        elif state.attempts - state.rate_limited >= self._policy.max_attempts:
            return False
        retry_after = error.retry_after if isinstance(error, APIStatusError) else None
        if retry_after is not None and retry_after > self._policy.max_retry_after:
            return False
        delay = backoff_delay(retry_state.attempt_number, self._policy, retry_after, self._rng)
        if state.deadline is not None and self._clock() + delay >= state.deadline:
            return False
        if not self.budget.withdraw(error):
            logger.warning("%s: retry budget exhausted, failing fast", op.name)
            return False
        state.next_delay = delay
        return True

    def _before_sleep(self, op: Operation, state: _CallState, retry_state: RetryCallState) -> None:
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
                state.attempts,
                reason,
                state.next_delay,
            )
        if self._on_event is not None:
            self._on_event(RetryScheduled(op.name, state.attempts, state.next_delay, reason))

    def _final_error(self, op: Operation, state: _CallState, error: MXOError) -> MXOError:
        self.stats.failures += 1
        final: MXOError = error
        if (
            isinstance(error, APIStatusError)
            and error.retry_after is not None
            and error.retry_after > self._policy.max_retry_after
            and not isinstance(error, RateLimitedError)
        ):
            final = RateLimitedError(error.status, error.message, error.retry_after)
        if maybe_applied(error) and not state.token_failed:
            state.maybe_applied = True
        if not op.idempotent and state.maybe_applied:
            self.stats.ambiguous += 1
            final = AmbiguousDeliveryError(
                f"{op.name} may or may not have been applied "
                f"after {state.attempts} attempt(s): {error}"
            )
        final.attempts = state.attempts
        return final

    async def _attempt(self, op: Operation, state: _CallState) -> RawResponse:
        if op.throttled:
            await self._throttle.acquire()
        signal = Signal.OTHER
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
                        state.token_failed = True
                        raise
            state.attempts += 1
            self.stats.requests += 1
            request = op.request
            headers = (
                self._headers(request.headers, token) if token is not None else request.headers
            )
            if self._on_event is not None:
                self._emit_sent(op, state)
            started = self._clock()
            time_left = None if state.deadline is None else state.deadline - started
            response = await self._transport.request(
                request.method, request.url, headers, request.body, time_left
            )
            status = response.status
            statuses = self.stats.statuses
            statuses[status] = statuses.get(status, 0) + 1
            if self._on_event is not None or logger.isEnabledFor(logging.DEBUG):
                self._emit_received(op, state, status, self._clock() - started)
            if status in op.accept:
                signal = Signal.OK
                return response
            if status == 401 and token is not None and not state.replayed_401:
                # The token expired or was revoked: drop it (if no one has yet) and replay once.
                state.replayed_401 = True
                self.stats.token_replays += 1
                self._tokens.invalidate(token)
                released = True
                self._throttle.release(Signal.OTHER)
                return await self._attempt(op, state)
            error = parse_error(
                status, response.headers, self._redact(response.body), self._wall_clock()
            )
            if status in _OVERLOAD:
                if error.retry_after is None:
                    signal = Signal.OVERLOADED
                else:
                    signal = Signal.PAUSED
                    self._throttle.pause(min(error.retry_after, self._policy.max_retry_after))
            raise error
        finally:
            if not released:
                self._throttle.release(signal)

    def _headers(self, base: Mapping[str, str], token: Token) -> Mapping[str, str]:
        if token is not self._auth_token:
            self._auth_token = token
            self._auth_headers = {}
        cached = self._auth_headers.get(id(base))
        if cached is None:
            cached = {**base, "Authorization": token.authorization}
            self._auth_headers[id(base)] = cached
        return cached

    def _redact(self, body: bytes) -> bytes:
        for secret in self._secrets():
            if secret:
                body = body.replace(secret.encode(), b"***")
        return body

    def _emit_sent(self, op: Operation, state: _CallState) -> None:
        assert self._on_event is not None
        customer = op.customer.masked() if op.customer is not None else ""
        self._on_event(
            RequestSent(op.name, op.request.method, op.request.path, state.attempts, customer)
        )

    def _emit_received(self, op: Operation, state: _CallState, status: int, elapsed: float) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            customer = op.customer.masked() if op.customer is not None else "-"
            logger.debug(
                "%s %s [%s] attempt %d -> %d in %.1f ms",
                op.request.method,
                op.name,
                customer,
                state.attempts,
                status,
                elapsed * 1000,
            )
        if self._on_event is not None:
            self._on_event(ResponseReceived(op.name, status, state.attempts, elapsed))
