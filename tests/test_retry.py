"""Retry decisions: the delivery rule, full-jitter backoff, and the retry budget."""

from __future__ import annotations

import random

import pytest

from mxo_async import RetryPolicy, ValidationError
from mxo_async._errors import MXOError, TimeoutError, TransportError, status_error
from mxo_async._retry import Decision, RetryBudget, backoff_delay, classify

POLICY = RetryPolicy()


@pytest.mark.parametrize(
    ("error", "idempotent", "expected"),
    [
        (status_error(429, ""), False, Decision.RETRY),
        (status_error(503, ""), False, Decision.RETRY),
        (status_error(500, ""), False, Decision.AMBIGUOUS),
        (status_error(502, ""), False, Decision.AMBIGUOUS),
        (status_error(504, ""), False, Decision.AMBIGUOUS),
        (status_error(408, ""), False, Decision.AMBIGUOUS),
        (status_error(500, ""), True, Decision.RETRY),
        (status_error(400, ""), True, Decision.FAIL),
        (status_error(404, ""), True, Decision.FAIL),
        (status_error(403, ""), True, Decision.FAIL),
        (TransportError("refused", request_sent=False), False, Decision.RETRY),
        (TransportError("reset"), False, Decision.AMBIGUOUS),
        (TransportError("reset"), True, Decision.RETRY),
        (TimeoutError("read"), False, Decision.AMBIGUOUS),
        (TimeoutError("connect", request_sent=False), False, Decision.RETRY),
        (MXOError("other"), True, Decision.FAIL),
    ],
)
def test_delivery_rule(error: MXOError, idempotent: bool, expected: Decision) -> None:
    """Each failure is classified as DESIGN.md's delivery rule prescribes."""
    assert expected == classify(error, idempotent=idempotent, policy=POLICY)


def test_retry_ambiguous_turns_ambiguity_into_retry() -> None:
    """With retry_ambiguous=True a maybe-applied send is retried."""
    policy = RetryPolicy(retry_ambiguous=True)
    assert Decision.RETRY == classify(TransportError("reset"), idempotent=False, policy=policy)


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    """The jittered delay never exceeds min(cap, base·2ⁿ)."""
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=3.0)
    rng = random.Random(1)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        delays = [backoff_delay(retry, policy, None, rng) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= ceiling
        assert max(delays) > ceiling * 0.8  # full jitter spreads over the whole range


def test_retry_after_is_a_floor() -> None:
    """A server's Retry-After is never undercut by the jitter."""
    assert 7.0 == backoff_delay(1, POLICY, 7.0, random.Random(0))


def test_budget_withdraws_and_refuses_when_empty() -> None:
    """Retries drain the budget; when it cannot pay, withdraw says no."""
    budget = RetryBudget(RetryPolicy(budget_capacity=10, retry_cost=5, timeout_retry_cost=10))
    assert (True, True, False) == (
        budget.withdraw(status_error(500, "")),
        budget.withdraw(status_error(502, "")),
        budget.withdraw(status_error(500, "")),
    )


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_answers_do_not_drain_the_budget(status: int) -> None:
    """429 and 503 are handled by the throttle; retrying them costs no budget."""
    budget = RetryBudget(RetryPolicy(budget_capacity=10, retry_cost=5))
    assert all(budget.withdraw(status_error(status, "")) for _ in range(100))
    assert 10.0 == budget.available


def test_budget_charges_more_for_timeouts() -> None:
    """A timeout costs timeout_retry_cost."""
    budget = RetryBudget(RetryPolicy(budget_capacity=10, retry_cost=5, timeout_retry_cost=10))
    assert budget.withdraw(TimeoutError("t"))
    assert 0.0 == budget.available


def test_zero_capacity_disables_the_budget() -> None:
    """budget_capacity=0 means unlimited retries (bounded by max_attempts only)."""
    budget = RetryBudget(RetryPolicy(budget_capacity=0))
    assert all(budget.withdraw(status_error(500, "")) for _ in range(1000))


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"backoff_base": -1.0}, {"max_retry_after": -5.0}]
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    """Invalid policy values raise ValidationError naming the field."""
    with pytest.raises(ValidationError, match="RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
