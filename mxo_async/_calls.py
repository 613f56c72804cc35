"""One logical call: attempts (``_sending``) retried under the retry policy, driven by tenacity.

The policy is configured declaratively, each part a small function of the call's history:

- ``retry``: only failures the delivery rule allows to replay (``_retry.classify``);
- ``wait``: full-jitter backoff with the server's ``Retry-After`` as a floor;
- ``stop``: out of attempts (429s have their own allowance), a ``Retry-After`` beyond the cap,
  the call's deadline (which the next wait would pass), or an empty retry budget.

Most calls succeed at their first attempt, and entering tenacity costs ~25 µs per call (a fifth of
a whole request's CPU; see the ``tenacity_first_attempt`` row of benchmarks/README.md), so the first
attempt runs bare and tenacity takes over at the first failure, judging it like any other.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
from tenacity import AsyncRetrying, RetryCallState
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from ._clock import Clock
from ._errors import AmbiguousDeliveryError, APIStatusError, MXOError, RateLimitedError
from ._events import EventHandler, RetryScheduled
from ._retry import Decision, RetryBudget, RetryPolicy, backoff_delay, classify, maybe_applied
from ._sending import Call, Sender
from ._telemetry import Telemetry
from ._throttle import ThrottleStats

__all__ = ["CallStats", "Caller", "ClientStats"]

logger = logging.getLogger("mxo_async")

R = TypeVar("R")


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
    callback_errors: int = 0
    """Exceptions raised by your ``on_event``/``on_progress`` callbacks (logged, then ignored)."""


def _call(state: RetryCallState) -> Call[Any]:
    call: Call[Any] = state.args[0]
    return call


def _failure(state: RetryCallState) -> MXOError | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    error = outcome.exception()
    return error if isinstance(error, MXOError) else None


class _Replayable(retry_base):
    """Retry a failure the delivery rule allows to replay (``_retry.classify``)."""

    def __init__(self, policy: RetryPolicy, idempotent: bool) -> None:
        self._policy = policy
        self._idempotent = idempotent

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = _failure(retry_state)
        if error is None or _call(retry_state).token_failed:
            return False  # a failed token request already ran its own retries
        return classify(error, idempotent=self._idempotent, policy=self._policy) is Decision.RETRY


class _Backoff(wait_base):
    """Full jitter ``U(0, min(cap, base·2ⁿ))``, never shorter than the server's ``Retry-After``."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        error = _failure(retry_state)
        retry_after = error.retry_after if isinstance(error, APIStatusError) else None
        return backoff_delay(retry_state.attempt_number, self._policy, retry_after, self._rng)


class _OutOfAttempts(stop_base):
    """``max_attempts`` failures, or ``max_rate_limited_attempts`` 429s (the throttle paces
    those: being rate limited is not a failure of the call)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: RetryCallState) -> bool:
        call = _call(retry_state)
        error = _failure(retry_state)
        if isinstance(error, APIStatusError) and error.status == 429:
            call.rate_limited += 1
            return call.rate_limited >= self._policy.max_rate_limited_attempts
        return call.attempts - call.rate_limited >= self._policy.max_attempts


class _WaitTooLong(stop_base):
    """The server asks for a wait beyond ``max_retry_after``, or the wait would pass the deadline."""

    def __init__(self, policy: RetryPolicy, clock: Clock) -> None:
        self._policy = policy
        self._clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = _failure(retry_state)
        if (
            isinstance(error, APIStatusError)
            and error.retry_after is not None
            and error.retry_after > self._policy.max_retry_after
        ):
            return True
        deadline = _call(retry_state).deadline
        return deadline is not None and self._clock.now() + retry_state.upcoming_sleep >= deadline


class _BudgetSpent(stop_base):
    """The client-wide retry budget cannot pay for this retry (checked last: it withdraws)."""

    def __init__(self, budget: RetryBudget, name: str) -> None:
        self._budget = budget
        self._name = name

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = _failure(retry_state)
        if error is None or self._budget.withdraw(error):
            return False
        logger.warning("%s: retry budget exhausted, failing fast", self._name)
        return True


class Caller:
    """Runs calls of one kind of sender under one retry policy."""

    def __init__(
        self,
        sender: Sender[Any],
        policy: RetryPolicy,
        clock: Clock,
        *,
        budget: RetryBudget,
        stats: CallStats,
        deadline: float | None,
        rng: random.Random | None = None,
        on_event: EventHandler | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._sender = sender
        self._policy = policy
        self._clock = clock
        self._budget = budget
        self._stats = stats
        self._deadline = deadline
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._on_event = on_event
        self._retrying: dict[bool, AsyncRetrying] = {}
        if telemetry is not None:
            # Decided once here, so that a client without telemetry pays nothing per call.
            self.run = telemetry.trace_calls(self)  # type: ignore[method-assign,assignment]

    async def run(self, call: Call[R]) -> tuple[R, int]:
        """Make ``call``, retrying as the policy allows; return its result and attempt count."""
        self._stats.calls += 1
        if self._deadline is not None:
            call.deadline = self._clock.now() + self._deadline
        try:
            result: R = await self._sender.send(call)
        except MXOError as failure:
            self._note(call, failure)
            call.pending_failure = failure
            return await self._retry(call)
        self._budget.refund()
        return result, call.attempts

    async def _attempt(self, call: Call[R]) -> R:
        try:
            result: R = await self._sender.send(call)
        except MXOError as error:
            self._note(call, error)
            raise
        return result

    @staticmethod
    def _note(call: Call[Any], error: MXOError) -> None:
        """Record in the call's history what a failed attempt tells the policy."""
        if maybe_applied(error) and not call.token_failed:
            call.maybe_applied = True

    async def _again(self, call: Call[R]) -> R:
        # tenacity's first attempt is the bare one that already failed: re-raise its failure
        # so that the policy judges every failure the same way.
        failure, call.pending_failure = call.pending_failure, None
        if failure is not None:
            raise failure
        return await self._attempt(call)

    async def _retry(self, call: Call[R]) -> tuple[R, int]:
        retrying = self._retrying_for(call).copy()  # a copy per call: tenacity keeps state on it
        try:
            result: R = await retrying(self._again, call)
        except MXOError as error:
            final = self._final_error(call, error)
            if final is error:
                raise
            raise final from error
        self._budget.refund()
        return result, call.attempts

    def _retrying_for(self, call: Call[Any]) -> AsyncRetrying:
        idempotent = call.operation.idempotent
        retrying = self._retrying.get(idempotent)
        if retrying is None:
            policy = self._policy
            retrying = AsyncRetrying(
                retry=_Replayable(policy, idempotent),
                wait=_Backoff(policy, self._rng),
                stop=(
                    _OutOfAttempts(policy)
                    | _WaitTooLong(policy, self._clock)
                    | _BudgetSpent(self._budget, call.operation.name)
                ),
                before_sleep=self._before_sleep,
                sleep=self._clock.sleep,
                reraise=True,
            )
            self._retrying[idempotent] = retrying
        return retrying

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        self._stats.retries += 1
        call = _call(retry_state)
        error = _failure(retry_state)
        delay = retry_state.upcoming_sleep
        reason = type(error).__name__ if error is not None else "unknown"
        if isinstance(error, APIStatusError):
            reason = f"HTTP {error.status}"
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s: attempt %d failed (%s), retrying in %.3f s",
                call.operation.name,
                call.attempts,
                reason,
                delay,
            )
        if self._on_event is not None:
            self._on_event(RetryScheduled(call.operation.name, call.attempts, delay, reason))

    def _final_error(self, call: Call[Any], error: MXOError) -> MXOError:
        """What the caller sees: ambiguous when a non-idempotent attempt may have been applied."""
        self._stats.failures += 1
        final: MXOError = error
        if (
            isinstance(error, APIStatusError)
            and error.retry_after is not None
            and error.retry_after > self._policy.max_retry_after
            and not isinstance(error, RateLimitedError)
        ):
            final = RateLimitedError(error.status, error.message, error.retry_after, error.code)
        if not call.operation.idempotent and call.maybe_applied:
            self._stats.ambiguous += 1
            final = AmbiguousDeliveryError(
                f"{call.operation.name} may or may not have been applied "
                f"after {call.attempts} attempt(s): {error}"
            )
        # A failed token request reports its own attempts: this call's request never left.
        final.attempts = error.attempts if call.token_failed else call.attempts
        return final
