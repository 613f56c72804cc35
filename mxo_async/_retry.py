"""Retry policy: which failures are retried, how long to wait, and the client-wide retry budget.

Pure decisions only. The client runs the attempts (with tenacity); this module answers "retry this?",
"how long to wait?" and "may we afford another retry?".
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from typing import Any

import attrs

from ._errors import APIStatusError, MXOError, TransportError, ValidationError
from ._errors import TimeoutError as MXOTimeoutError

__all__ = ["Decision", "RetryBudget", "RetryPolicy", "backoff_delay", "classify", "maybe_applied"]

# A 429 or 503 is the server refusing the request before doing anything with it.
_NOT_APPLIED_STATUSES = frozenset({429, 503})
# A 4xx says what was wrong with the request, so it was not processed; except 408, the server
# giving up on a request it may have started to act on.
_MAYBE_APPLIED_4XX = 408
# 5xx that say the server cannot handle this kind of request at all: a retry gets the same answer.
_PERMANENT_5XX = frozenset({501, 505})
# A backoff exponent past this already exceeds any cap (0.25 s · 2⁶² is 36 billion years).
_MAX_EXPONENT = 62


def _at_least(minimum: float, what: str) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not value >= minimum:
            raise ValidationError(f"RetryPolicy.{attribute.name}", f"must be >= {minimum}{what}")

    return check


@attrs.frozen
class RetryPolicy:
    """How a call is retried.

    Args:
        max_attempts: attempts per call, the first included (1 disables retries); attempts
            answered 429 are not counted here but against ``max_rate_limited_attempts``.
        max_rate_limited_attempts: attempts per call that may be answered 429 (rate limited)
            before the call fails with ``RateLimitedError``; the throttle paces them.
        retry_ambiguous: also retry a ``send_activity`` that may already have been applied
            (at-least-once delivery instead of at-most-once).
        backoff_base: the first backoff ceiling in seconds; it doubles per attempt.
        backoff_cap: the largest backoff ceiling in seconds.
        max_retry_after: a ``Retry-After`` above this raises ``RateLimitedError`` instead of
            sleeping.
        budget_capacity: retry-budget tokens (botocore standard mode: 500); 0 disables the budget.
        retry_cost: tokens one retry takes (timeouts take ``timeout_retry_cost``).
        success_refund: tokens a success returns to the budget.
    """

    max_attempts: int = attrs.field(default=5, validator=_at_least(1, ""))
    max_rate_limited_attempts: int = attrs.field(default=10, validator=_at_least(1, ""))
    retry_ambiguous: bool = False
    backoff_base: float = attrs.field(default=0.25, validator=_at_least(0.0, " seconds"))
    backoff_cap: float = attrs.field(default=20.0, validator=_at_least(0.0, " seconds"))
    max_retry_after: float = attrs.field(default=60.0, validator=_at_least(0.0, " seconds"))
    budget_capacity: float = attrs.field(default=500.0, validator=_at_least(0.0, ""))
    retry_cost: float = attrs.field(default=5.0, validator=_at_least(0.0, ""))
    timeout_retry_cost: float = attrs.field(default=10.0, validator=_at_least(0.0, ""))
    success_refund: float = attrs.field(default=1.0, validator=_at_least(0.0, ""))


class Decision(enum.Enum):
    """What to do after a failed attempt."""

    RETRY = "retry"  # transient, and safe to replay
    AMBIGUOUS = "ambiguous"  # transient, but the request may have been applied
    FAIL = "fail"  # permanent: raise


def _not_processed(status: int) -> bool:
    """True for the statuses known to mean the server did not act on the request."""
    return status in _NOT_APPLIED_STATUSES or (400 <= status < 500 and status != _MAYBE_APPLIED_4XX)


def _transient(status: int) -> bool:
    """True for the statuses a later attempt may answer differently."""
    return status == _MAYBE_APPLIED_4XX or (500 <= status < 600 and status not in _PERMANENT_5XX)


def maybe_applied(error: MXOError) -> bool:
    """True when the failed attempt may have been applied by the server.

    Only the statuses known to mean "not processed" (429, 503 and the 4xx answers but 408) are
    safe: any other answer (a 5xx the contract does not name, such as a gateway's 520 or 524 sent
    after the origin applied the request, or an unexpected 2xx or 3xx) may follow an applied
    request.
    """
    if isinstance(error, TransportError):
        return error.request_sent
    if isinstance(error, APIStatusError):
        return not _not_processed(error.status)
    return False


def classify(error: MXOError, *, idempotent: bool, policy: RetryPolicy) -> Decision:
    """Decide whether ``error`` is retried, under the delivery rule (README, "Errors and the
    delivery rule").

    Transient: 408, 429 and every 5xx but 501 and 505, plus transport failures. A transient
    failure is retried when the request certainly was not applied (429, 503, a refused
    connection), when the call is idempotent, or under ``retry_ambiguous``; else it is
    ``AMBIGUOUS``. A permanent failure is ``FAIL`` (and still ambiguous for a non-idempotent
    call when :func:`maybe_applied` says so).
    """
    if isinstance(error, APIStatusError):
        if error.status in _NOT_APPLIED_STATUSES:
            return Decision.RETRY
        if not _transient(error.status):
            return Decision.FAIL
    elif not isinstance(error, TransportError):
        return Decision.FAIL
    if not maybe_applied(error) or idempotent or policy.retry_ambiguous:
        return Decision.RETRY
    return Decision.AMBIGUOUS


def backoff_delay(
    retry_number: int, policy: RetryPolicy, retry_after: float | None, rng: random.Random
) -> float:
    """Full jitter ``U(0, min(cap, base·2ⁿ))``, never less than the server's ``Retry-After``.

    ``retry_number`` is 1 for the wait before the second attempt.
    """
    # The exponent is capped before the power: 2**1100 does not convert to a float.
    exponent = min(max(retry_number - 1, 0), _MAX_EXPONENT)
    ceiling = min(policy.backoff_cap, policy.backoff_base * float(2**exponent))
    delay = rng.uniform(0.0, ceiling)
    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay


class RetryBudget:
    """A client-wide token bucket of retries (botocore "standard" mode).

    Each retry of an error (5xx, timeout, reset) withdraws tokens and each success refunds one, so
    a short blip is retried freely while a client-wide outage drains the bucket and further
    failures are raised at once instead of multiplying the load on a struggling server.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._capacity = policy.budget_capacity
        self._tokens = policy.budget_capacity

    @property
    def available(self) -> float:
        """Tokens left."""
        return self._tokens

    def withdraw(self, error: MXOError) -> bool:
        """Take the cost of retrying ``error``; False when the budget cannot afford it.

        Throttling answers (429, 503) are free: the shared throttle already answers them by
        pausing and shrinking concurrency, so retrying them cannot multiply the load.
        """
        if self._capacity == 0:
            return True
        if isinstance(error, APIStatusError) and error.status in _NOT_APPLIED_STATUSES:
            return True
        cost = (
            self._policy.timeout_retry_cost
            if isinstance(error, MXOTimeoutError)
            else self._policy.retry_cost
        )
        if cost > self._tokens:
            return False
        self._tokens -= cost
        return True

    def refund(self) -> None:
        """Return tokens after a success (never above capacity)."""
        if self._tokens < self._capacity:
            self._tokens = min(self._capacity, self._tokens + self._policy.success_refund)
