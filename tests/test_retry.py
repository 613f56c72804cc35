"""Retry decisions: the delivery rule, full-jitter backoff, and the retry budget."""

from __future__ import annotations

import random

import pytest

import mxo_async as mxo
from mxo_async import AmbiguousDeliveryError, RetryPolicy, ServerError, ValidationError
from mxo_async._errors import MXOError, TimeoutError, TransportError, status_error
from mxo_async._retry import Decision, RetryBudget, backoff_delay, classify, maybe_applied

from .fakes import FakeClock, FakeTransport, Sent, response

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
    """Each failure is classified as the delivery rule (README, "Errors and the delivery rule") prescribes."""
    assert expected == classify(error, idempotent=idempotent, policy=POLICY)


UNKNOWN_5XX = [501, 505, 507, 508, 511, 520, 522, 524, 598, 599]
NOT_PROCESSED = [400, 401, 403, 404, 409, 413, 422, 429, 503]


@pytest.mark.parametrize("status", UNKNOWN_5XX)
def test_unknown_5xx_may_have_been_applied(status: int) -> None:
    """A 5xx the contract does not name (a gateway's 524 follows an applied request) may be applied."""
    assert True is maybe_applied(status_error(status, ""))


@pytest.mark.parametrize("status", [202, 204, 302, 307, 600, 999])
def test_unexpected_statuses_may_have_been_applied(status: int) -> None:
    """Only statuses known to mean "not processed" are safe: an odd 2xx, 3xx or 6xx is not."""
    assert True is maybe_applied(status_error(status, ""))


@pytest.mark.parametrize("status", NOT_PROCESSED)
def test_statuses_known_to_mean_not_processed(status: int) -> None:
    """429, 503 and the 4xx answers (but 408) say the request was not processed."""
    assert False is maybe_applied(status_error(status, ""))


@pytest.mark.parametrize("status", [s for s in UNKNOWN_5XX if s not in (501, 505)])
def test_unknown_5xx_send_is_ambiguous_not_retried(status: int) -> None:
    """For a send, a transient unknown 5xx is AMBIGUOUS (never replayed by default)."""
    assert Decision.AMBIGUOUS == classify(status_error(status, ""), idempotent=False, policy=POLICY)


@pytest.mark.parametrize("status", [s for s in UNKNOWN_5XX if s not in (501, 505)])
def test_unknown_5xx_is_retried_for_idempotent_calls(status: int) -> None:
    """An idempotent call retries any 5xx but 501 and 505."""
    assert Decision.RETRY == classify(status_error(status, ""), idempotent=True, policy=POLICY)


@pytest.mark.parametrize("status", [501, 505])
def test_permanent_5xx_are_not_retried(status: int) -> None:
    """501 and 505 say the server never handles such a request: a retry cannot help."""
    assert Decision.FAIL == classify(status_error(status, ""), idempotent=True, policy=POLICY)


@pytest.mark.parametrize("status", [520, 524, 599])
def test_unknown_5xx_send_is_retried_under_retry_ambiguous(status: int) -> None:
    """With retry_ambiguous=True an unknown 5xx send is retried (at-least-once)."""
    policy = RetryPolicy(retry_ambiguous=True)
    assert Decision.RETRY == classify(status_error(status, ""), idempotent=False, policy=policy)


def _client(transport: FakeTransport) -> mxo.MXOClient:
    return mxo.MXOClient(
        "https://eu2.thunderhead.com",
        "ONE-LJBKEO4Y7J-5669",
        "client-id",
        "client-SECRET-value",
        transport=transport,
        clock=FakeClock(),
        retry=RetryPolicy(max_attempts=3),
    )


@pytest.mark.parametrize("status", [501, 505, 507, 520, 522, 524, 598, 599])
async def test_send_activity_answered_unknown_5xx_is_ambiguous(status: int) -> None:
    """send_activity answered with an unknown 5xx raises AmbiguousDeliveryError after one attempt."""
    transport = FakeTransport(lambda sent: response(status, b"<html>gateway</html>"))
    async with _client(transport) as client:
        with pytest.raises(AmbiguousDeliveryError) as info:
            await client.send_activity(mxo.Customer.by_key("k"), "atm://a", mxo.Activity("p", "t"))
    assert (1, 1) == (info.value.attempts, len(transport.api_calls))


async def test_delete_answered_524_is_retried() -> None:
    """An idempotent delete answered 524 is retried and succeeds on the next attempt."""
    answers = [response(524, b""), response(200, {"tids": ["t-1"]})]

    def handler(sent: Sent) -> object:
        return answers.pop(0)

    transport = FakeTransport(handler)  # type: ignore[arg-type]
    async with _client(transport) as client:
        erasure = await client.delete_customer(mxo.Customer.by_key("k"))
    assert (("t-1",), 2) == (erasure.tids, len(transport.api_calls))


async def test_delete_answered_501_fails_at_once() -> None:
    """A delete answered 501 raises ServerError without a retry."""
    transport = FakeTransport(lambda sent: response(501, b""))
    async with _client(transport) as client:
        with pytest.raises(ServerError):
            await client.delete_customer(mxo.Customer.by_key("k"))
    assert 1 == len(transport.api_calls)


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


@pytest.mark.parametrize("retry_number", [1025, 1100, 10_000, 10**9])
def test_backoff_of_a_huge_retry_number_is_capped(retry_number: int) -> None:
    """A retry number past 1024 (max_rate_limited_attempts=2000) waits at most the cap, no OverflowError."""
    policy = RetryPolicy(max_rate_limited_attempts=2000, backoff_base=0.25, backoff_cap=20.0)
    delay = backoff_delay(retry_number, policy, None, random.Random(3))
    assert 0.0 <= delay <= 20.0


async def test_more_than_1024_rate_limited_attempts_do_not_overflow() -> None:
    """A call answered 429 1,100 times under max_rate_limited_attempts=2000 still succeeds."""
    answers = [response(429, b"")] * 1100 + [response(200, {"tid": "t-1", "errors": []})]
    answers.reverse()
    transport = FakeTransport(lambda sent: answers.pop())
    client = mxo.MXOClient(
        "https://eu2.thunderhead.com",
        "S",
        "id",
        "secret",
        transport=transport,
        clock=FakeClock(),
        retry=RetryPolicy(max_rate_limited_attempts=2000),
        timeouts=mxo.Timeouts(deadline=None),
        limits=mxo.Limits(adaptive=False),  # the throttle's waits are on the real clock
    )
    async with client:
        result = await client.send_activity(
            mxo.Customer.by_key("k"), "atm://a", mxo.Activity("p", "t")
        )
    assert ("t-1", 1101) == (result.tid, len(transport.api_calls))


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
