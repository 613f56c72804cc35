"""MXOClient over a fake transport: calls, retries, the delivery rule, auth and validation."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Unpack

import orjson
import pytest

import mxo_async as mxo
from mxo_async import (
    Activity,
    AmbiguousDeliveryError,
    AuthenticationError,
    Customer,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    Timeouts,
    TransportError,
    UnauthorizedError,
    ValidationError,
)
from mxo_async import TimeoutError as MXOTimeoutError
from mxo_async._transport import AiohttpTransport, RawResponse

from .fakes import ClientOptions, FakeClock, FakeTransport, Handler, Sent, response

ALICE = Customer.by_key("alice@example.com")
ATM = [Activity("atm", "balance_inquiry")]
OK_ACTIVITY = {"tid": "t-1", "errors": []}
NOT_FOUND = {"errorCode": "CUSTOMER_NOT_FOUND", "errorMessage": "Specified customer not found"}


def make_client(
    transport: FakeTransport, clock: FakeClock | None = None, **kwargs: Unpack[ClientOptions]
) -> mxo.MXOClient:
    return mxo.MXOClient(
        "https://eu2.thunderhead.com",
        "ONE-LJBKEO4Y7J-5669",
        "client-id",
        "client-SECRET-value",
        transport=transport,
        clock=clock or FakeClock(),
        **kwargs,
    )


def sequence(*answers: RawResponse | BaseException) -> Handler:
    """A handler answering with each item in turn (exceptions are raised), then the last forever."""
    queue = list(answers)

    def handler(sent: Sent) -> RawResponse:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return handler


@pytest.fixture
async def transport() -> AsyncIterator[FakeTransport]:
    yield FakeTransport()


async def test_send_activity_returns_the_tid_and_sends_a_bearer_token(
    transport: FakeTransport,
) -> None:
    """A successful send returns ActivityResult(tid) after one token request and one API call."""
    async with make_client(transport) as client:
        result = await client.send_activity(
            ALICE, "atm://atm", ATM, properties={"campaign": "summer"}
        )
    assert mxo.ActivityResult("t-1") == result
    assert 1 == len(transport.token_calls)
    assert 1 == len(transport.api_calls)
    assert "Bearer tok-SECRET-1" == transport.api_calls[0].headers["Authorization"]


async def test_token_is_reused_across_calls(transport: FakeTransport) -> None:
    """Ten calls share one token request."""
    async with make_client(transport) as client:
        for _ in range(10):
            await client.send_activity(ALICE, "atm://atm", ATM)
    assert 1 == len(transport.token_calls)
    assert 10 == len(transport.api_calls)


async def test_single_activity_is_accepted_without_a_list(transport: FakeTransport) -> None:
    """send_activity accepts one Activity as well as a sequence."""
    async with make_client(transport) as client:
        await client.send_activity(ALICE, "atm://atm", Activity("atm", "x"))
    body = orjson.loads(transport.api_calls[0].body or b"")
    assert [{"propositionCode": "atm", "activityTypeCode": "x"}] == body["activities"]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.send_activity(Customer.by_key("k"), "bank.com", ATM), "touchpoint"),
        (lambda c: c.send_activity(Customer.by_key("k"), "web://x", []), "activities"),
        (lambda c: c.send_activity(Customer.by_key("k"), "web://x", ATM * 101), "activities"),
        (
            lambda c: c.send_activity(Customer.by_key("k"), "web://x", ATM, {"a": {"b": "c"}}),
            "properties['a']",
        ),
        (lambda c: c.send_activity(Customer.by_key("k"), "web://x", ATM, {"": "c"}), "properties"),
        (lambda c: c.send_activity("alice", "web://x", ATM), "customer"),
        (lambda c: c.get_structure(ALICE, "web://x", "customer Profile"), "structure"),
        (lambda c: c.get_structure(ALICE, "web://x", ""), "structure"),
        (lambda c: c.get_structure(ALICE, "nope", "p"), "touchpoint"),
        (lambda c: c.get_structure(ALICE, "web://x", "p", {"n": 1}), "properties['n']"),
        (lambda c: c.delete_customer(None), "customer"),
    ],
)
async def test_bad_input_raises_before_any_request(
    transport: FakeTransport, call: Callable[[mxo.MXOClient], Awaitable[object]], field: str
) -> None:
    """Bad input raises ValidationError naming the field, and nothing is sent (not even a token request)."""
    async with make_client(transport) as client:
        with pytest.raises(ValidationError) as info:
            await call(client)
    assert field == info.value.field
    assert [] == transport.sent


async def test_get_structure_returns_the_dict(transport: FakeTransport) -> None:
    """get_structure unwraps the envelope into a Structure."""
    transport.handler = lambda sent: response(
        200, {"structureApiName": "customerProfile", "tid": "t-1", "structure": {"tier": "gold"}}
    )
    async with make_client(transport) as client:
        data = await client.get_structure(
            ALICE, "web://bank.com", "customerProfile", {"renewalDue": "true"}
        )
    assert mxo.Structure("customerProfile", "t-1", {"tier": "gold"}) == data


async def test_get_structure_404_raises_not_found(transport: FakeTransport) -> None:
    """An unknown structure raises NotFoundError without retrying."""
    transport.handler = lambda sent: response(
        404, {"statusCode": 404, "errorMessage": "unknown structure"}
    )
    async with make_client(transport) as client:
        with pytest.raises(NotFoundError, match="unknown structure") as info:
            await client.get_structure(ALICE, "web://bank.com", "nope")
    assert 1 == info.value.attempts
    assert 1 == len(transport.api_calls)


async def test_delete_customer_404_is_found_false(transport: FakeTransport) -> None:
    """Deleting an unknown customer (404 CUSTOMER_NOT_FOUND) succeeds with found=False."""
    transport.handler = lambda sent: response(404, NOT_FOUND)
    async with make_client(transport) as client:
        assert mxo.Erasure((), (), False) == await client.delete_customer(ALICE)


async def test_429_is_retried_honouring_retry_after(transport: FakeTransport) -> None:
    """A 429 with Retry-After is retried after at least that many seconds."""
    clock = FakeClock()
    transport.handler = sequence(
        response(429, {}, {"Retry-After": "3"}), response(200, OK_ACTIVITY)
    )
    async with make_client(transport, clock) as client:
        await client.send_activity(ALICE, "atm://atm", ATM)
    assert 2 == len(transport.api_calls)
    assert clock.slept[0] >= 3.0


async def test_retry_after_above_the_cap_raises_rate_limited(transport: FakeTransport) -> None:
    """A Retry-After above max_retry_after raises RateLimitedError carrying it, without sleeping."""
    clock = FakeClock()
    transport.handler = lambda sent: response(503, {}, {"Retry-After": "600"})
    async with make_client(transport, clock, retry=RetryPolicy(max_retry_after=30)) as client:
        with pytest.raises(RateLimitedError) as info:
            await client.get_structure(ALICE, "web://x", "p")
    assert 600.0 == info.value.retry_after
    assert 1 == len(transport.api_calls)
    assert [] == [d for d in clock.slept if d >= 1]


async def test_persistent_503_stops_after_max_attempts(transport: FakeTransport) -> None:
    """An endless 503 is attempted max_attempts times, then raises ServerError."""
    transport.handler = lambda sent: response(503, {"errorMessage": "busy"})
    async with make_client(transport, retry=RetryPolicy(max_attempts=4)) as client:
        with pytest.raises(ServerError) as info:
            await client.delete_customer(ALICE)
    assert 4 == info.value.attempts
    assert 4 == len(transport.api_calls)


async def test_rate_limits_have_their_own_allowance(transport: FakeTransport) -> None:
    """429s do not use up max_attempts: they are retried up to max_rate_limited_attempts."""
    transport.handler = lambda sent: response(429)
    policy = RetryPolicy(max_attempts=2, max_rate_limited_attempts=6)
    async with make_client(transport, retry=policy) as client:
        with pytest.raises(RateLimitedError) as info:
            await client.get_structure(ALICE, "web://x", "p")
    assert 6 == info.value.attempts
    assert 6 == len(transport.api_calls)


async def test_rate_limits_and_errors_are_counted_apart(transport: FakeTransport) -> None:
    """A mix of 429s and 500s stops when the 500s reach max_attempts."""
    transport.handler = sequence(
        response(429), response(500), response(429), response(500), response(200, {"tids": []})
    )
    async with make_client(transport, retry=RetryPolicy(max_attempts=2)) as client:
        with pytest.raises(ServerError):
            await client.delete_customer(ALICE)
    assert 4 == len(transport.api_calls)


async def test_backoff_is_full_jitter_within_the_exponential_ceiling(
    transport: FakeTransport,
) -> None:
    """Each backoff lies in [0, min(cap, base·2ⁿ)]."""
    clock = FakeClock()
    transport.handler = lambda sent: response(500)
    policy = RetryPolicy(max_attempts=6, backoff_base=1.0, backoff_cap=5.0)
    async with make_client(transport, clock, retry=policy) as client:
        with pytest.raises(ServerError):
            await client.get_structure(ALICE, "web://x", "p")
    ceilings = [1.0, 2.0, 4.0, 5.0, 5.0]
    assert 5 == len(clock.slept)
    assert all(0.0 <= d <= c for d, c in zip(clock.slept, ceilings, strict=True))


@pytest.mark.parametrize("status", [500, 502, 504, 408])
async def test_send_activity_is_not_replayed_after_a_maybe_applied_status(
    transport: FakeTransport, status: int
) -> None:
    """By default a send that may have been applied raises AmbiguousDeliveryError after one attempt."""
    transport.handler = lambda sent: response(status)
    async with make_client(transport) as client:
        with pytest.raises(AmbiguousDeliveryError) as info:
            await client.send_activity(ALICE, "atm://atm", ATM)
    assert 1 == len(transport.api_calls)
    assert 1 == info.value.attempts
    cause = info.value.__cause__
    assert isinstance(cause, mxo.APIStatusError)
    assert status == cause.status


@pytest.mark.parametrize("status", [429, 503])
async def test_send_activity_is_retried_when_certainly_not_applied(
    transport: FakeTransport, status: int
) -> None:
    """429 and 503 mean the request was not applied: send_activity retries them."""
    transport.handler = sequence(response(status), response(200, OK_ACTIVITY))
    async with make_client(transport) as client:
        assert "t-1" == (await client.send_activity(ALICE, "atm://atm", ATM)).tid
    assert 2 == len(transport.api_calls)


async def test_send_activity_retries_a_connect_failure(transport: FakeTransport) -> None:
    """A connection that could not be opened is safe to retry."""
    transport.handler = sequence(
        TransportError("refused", request_sent=False), response(200, OK_ACTIVITY)
    )
    async with make_client(transport) as client:
        await client.send_activity(ALICE, "atm://atm", ATM)
    assert 2 == len(transport.api_calls)


@pytest.mark.parametrize("error", [TransportError("reset"), MXOTimeoutError("read timeout")])
async def test_send_activity_after_send_failure_is_ambiguous(
    transport: FakeTransport, error: Exception
) -> None:
    """A reset or timeout after the request was sent raises AmbiguousDeliveryError by default."""
    transport.handler = sequence(error)
    async with make_client(transport) as client:
        with pytest.raises(AmbiguousDeliveryError):
            await client.send_activity(ALICE, "atm://atm", ATM)
    assert 1 == len(transport.api_calls)


async def test_retry_ambiguous_gives_at_least_once(transport: FakeTransport) -> None:
    """With retry_ambiguous=True a reset send is replayed and succeeds."""
    transport.handler = sequence(TransportError("reset"), response(500), response(200, OK_ACTIVITY))
    async with make_client(transport, retry=RetryPolicy(retry_ambiguous=True)) as client:
        assert "t-1" == (await client.send_activity(ALICE, "atm://atm", ATM)).tid
    assert 3 == len(transport.api_calls)


async def test_ambiguity_is_remembered_across_attempts(transport: FakeTransport) -> None:
    """If an earlier attempt may have been applied, a later definite failure is still ambiguous."""
    transport.handler = sequence(MXOTimeoutError("t"), response(400, {"errorMessage": "bad"}))
    async with make_client(transport, retry=RetryPolicy(retry_ambiguous=True)) as client:
        with pytest.raises(AmbiguousDeliveryError):
            await client.send_activity(ALICE, "atm://atm", ATM)


async def test_idempotent_calls_retry_timeouts_and_resets(transport: FakeTransport) -> None:
    """get_structure and delete_customer retry transport failures freely."""
    transport.handler = sequence(
        MXOTimeoutError("t"), TransportError("reset"), response(200, {"tids": []})
    )
    async with make_client(transport) as client:
        assert mxo.Erasure((), (), True) == await client.delete_customer(ALICE)
    assert 3 == len(transport.api_calls)


async def test_400_is_not_retried(transport: FakeTransport) -> None:
    """A client error fails at once with its message."""
    transport.handler = lambda sent: response(
        400, {"statusCode": 400, "errorMessage": "dynamicPropositionCode too long"}
    )
    async with make_client(transport) as client:
        with pytest.raises(mxo.BadRequestError, match="too long"):
            await client.get_structure(ALICE, "web://x", "p")
    assert 1 == len(transport.api_calls)


async def test_401_refreshes_the_token_and_replays_once(transport: FakeTransport) -> None:
    """A 401 drops the token, fetches a new one and replays the call once."""
    transport.handler = sequence(response(401), response(200, OK_ACTIVITY))
    async with make_client(transport) as client:
        await client.send_activity(ALICE, "atm://atm", ATM)
        assert 1 == client.stats.token_replays
    assert 2 == len(transport.token_calls)
    assert 2 == len(transport.api_calls)


async def test_persistent_401_raises_unauthorized(transport: FakeTransport) -> None:
    """A second 401 after a fresh token raises UnauthorizedError."""
    transport.handler = lambda sent: response(401)
    async with make_client(transport) as client:
        with pytest.raises(UnauthorizedError):
            await client.get_structure(ALICE, "web://x", "p")
    assert 2 == len(transport.token_calls)
    assert 2 == len(transport.api_calls)


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_refused_credentials_raise_authentication_error(
    transport: FakeTransport, status: int
) -> None:
    """The token endpoint's 400/401/403 raise AuthenticationError and no API call is made."""
    transport.token_handler = lambda sent: response(status, {"error": "invalid_client"})
    async with make_client(transport) as client:
        with pytest.raises(AuthenticationError):
            await client.send_activity(ALICE, "atm://atm", ATM)
    assert 1 == len(transport.token_calls)
    assert 0 == len(transport.api_calls)


async def test_token_endpoint_503_is_retried(transport: FakeTransport) -> None:
    """Transient token endpoint failures are retried like any call."""
    from .fakes import TOKEN_BODY

    transport.token_handler = sequence(
        response(503), TransportError("reset"), response(200, TOKEN_BODY)
    )
    async with make_client(transport) as client:
        await client.send_activity(ALICE, "atm://atm", ATM)
    assert 3 == len(transport.token_calls)
    assert 1 == len(transport.api_calls)


async def test_thousand_concurrent_calls_on_a_revoked_token_cause_one_refresh(
    transport: FakeTransport,
) -> None:
    """1000 calls hitting 401 at once share exactly one new token request, and all succeed."""
    revoked = "Bearer tok-SECRET-1"
    fresh = orjson.dumps({"access_token": "tok-NEW", "expires_in": 3600})
    transport.token_handler = sequence(
        response(200, b'{"access_token": "tok-SECRET-1", "expires_in": 3600}'), response(200, fresh)
    )

    async def api(sent: Sent) -> RawResponse:
        await asyncio.sleep(0)
        return (
            response(401)
            if sent.headers["Authorization"] == revoked
            else response(200, OK_ACTIVITY)
        )

    transport.handler = api
    async with make_client(transport, limits=mxo.Limits(max_connections=1000)) as client:
        await client.send_activity(ALICE, "atm://atm", ATM)  # first token (now revoked server-side)
        results = await asyncio.gather(
            *(client.send_activity(ALICE, "atm://atm", ATM) for _ in range(1000))
        )
    assert 1000 == sum(r.tid == "t-1" for r in results)
    assert 2 == len(transport.token_calls)


async def test_retry_budget_makes_an_outage_fail_fast(transport: FakeTransport) -> None:
    """When the budget is drained, failures are raised without further retries."""
    transport.handler = lambda sent: response(500)
    policy = RetryPolicy(max_attempts=5, budget_capacity=20, retry_cost=5)
    async with make_client(transport, retry=policy) as client:
        for _ in range(3):
            with pytest.raises(ServerError):
                await client.delete_customer(ALICE)
    # 4 retries drain 20 tokens: 5 + 1 + 1 attempts instead of 15.
    assert 7 == len(transport.api_calls)


async def test_success_refills_the_retry_budget(transport: FakeTransport) -> None:
    """Successes return tokens to the budget, never above capacity."""
    transport.handler = sequence(response(502), response(200, {"tids": []}))
    async with make_client(
        transport, retry=RetryPolicy(budget_capacity=50, retry_cost=5, success_refund=1)
    ) as client:
        await client.delete_customer(ALICE)
        assert 46.0 == client.stats.retry_budget
        await client.delete_customer(ALICE)
        assert 47.0 == client.stats.retry_budget


async def test_deadline_stops_retries_that_would_overrun_it(transport: FakeTransport) -> None:
    """A retry whose wait would pass the per-call deadline is not attempted."""
    transport.handler = lambda sent: response(503, {}, {"Retry-After": "5"})
    async with make_client(transport, timeouts=Timeouts(deadline=1.0)) as client:
        with pytest.raises(ServerError):
            await client.delete_customer(ALICE)
    assert 1 == len(transport.api_calls)


async def test_retry_after_pauses_the_whole_client(transport: FakeTransport) -> None:
    """A Retry-After answered to one call holds the next, unrelated call until the pause ends."""
    clock = FakeClock()
    sent_at: list[tuple[str, float]] = []

    def answer(sent: Sent) -> RawResponse:
        sent_at.append((sent.method, clock.now()))
        if sent.method == "POST":
            return response(429, {}, {"Retry-After": "2"})
        return response(200, {"tids": []})

    transport.handler = answer
    # One rate-limited attempt: the structure call gives up at once, so only the pause can hold
    # the delete that follows it.
    policy = RetryPolicy(max_rate_limited_attempts=1)
    async with make_client(transport, clock, retry=policy) as client:
        with pytest.raises(RateLimitedError):
            await client.get_structure(ALICE, "web://x", "p")
        await client.delete_customer(ALICE)
    assert [("POST", 0.0), ("DELETE", 2.0)] == sent_at


async def test_events_report_sent_received_and_retry(transport: FakeTransport) -> None:
    """on_event receives typed events for requests, responses, retries and token refreshes."""
    events: list[mxo.Event] = []
    transport.handler = sequence(response(503), response(200, OK_ACTIVITY))
    async with make_client(transport, on_event=events.append) as client:
        await client.send_activity(ALICE, "atm://atm", ATM)
    kinds = [
        type(e).__name__
        for e in events
        if not isinstance(e, mxo.Throttled | mxo.ConcurrencyChanged)
    ]
    assert [
        "RequestSent",
        "ResponseReceived",
        "TokenRefreshed",
        "RequestSent",
        "ResponseReceived",
        "RetryScheduled",
        "RequestSent",
        "ResponseReceived",
    ] == kinds
    sent = next(e for e in events if isinstance(e, mxo.RequestSent))
    assert "alice@example.com" not in repr(sent)


async def test_close_closes_the_transport(transport: FakeTransport) -> None:
    """Leaving async with closes the transport."""
    async with make_client(transport) as client:
        pass
    assert transport.closed
    assert client.closed


def test_http_base_url_is_refused_off_loopback() -> None:
    """Plain http to a non-loopback host needs an explicit opt-in."""
    with pytest.raises(ValidationError, match="base_url"):
        mxo.MXOClient("http://eu2.thunderhead.com", "s", "i", "c")


def test_http_loopback_and_opt_in_are_allowed() -> None:
    """Loopback http and an explicit opt-in are accepted."""
    mxo.MXOClient("http://127.0.0.1:8080", "s", "i", "c")
    mxo.MXOClient("http://10.0.0.1", "s", "i", "c", allow_insecure_http=True)


@pytest.mark.parametrize("base_url", ["ftp://x", "eu2.thunderhead.com", "", "https://x/?a=1"])
def test_bad_base_urls_are_refused(base_url: str) -> None:
    """Base URLs must be plain http(s) URLs."""
    with pytest.raises(ValidationError, match="base_url"):
        mxo.MXOClient(base_url, "s", "i", "c")


def test_from_env_reads_mxo_variables() -> None:
    """from_env builds a client from MXO_* variables."""
    client = mxo.MXOClient.from_env(
        {
            "MXO_BASE_URL": "https://na5.thunderhead.com",
            "MXO_SITE_KEY": "ONE-LJBKEO4Y7J-5669",
            "MXO_CLIENT_ID": "id",
            "MXO_CLIENT_SECRET": "secret",
        }
    )
    assert "https://na5.thunderhead.com" in repr(client)
    assert "secret" not in repr(client)


def test_from_env_names_the_missing_variable() -> None:
    """A missing variable raises ValidationError naming it."""
    with pytest.raises(ValidationError, match="MXO_CLIENT_SECRET"):
        mxo.MXOClient.from_env(
            {"MXO_BASE_URL": "https://x", "MXO_SITE_KEY": "s", "MXO_CLIENT_ID": "i"}
        )


async def test_garbage_collected_open_client_warns() -> None:
    """A client dropped with an open session emits ResourceWarning."""
    client = mxo.MXOClient("http://127.0.0.1:9", "s", "i", "c")
    transport = client._transport
    assert isinstance(transport, AiohttpTransport)
    session = transport._get_session()
    with pytest.warns(ResourceWarning, match="MXOClient was garbage-collected"):
        del client
        gc.collect()
    await session.close()


async def test_a_long_erasure_sweep_holds_no_memory_per_request(transport: FakeTransport) -> None:
    """Per-request data (a delete's headers, its customer) is not kept after the request."""
    transport.handler = lambda sent: response(404, NOT_FOUND)
    async with make_client(transport) as client:
        for i in range(200):  # warm-up: token, caches, interned names
            await client.delete_customer(mxo.Customer.by_key(f"warm-{i}@example.com"))
        transport.sent.clear()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for i in range(3_000):
                await client.delete_customer(mxo.Customer.by_key(f"user-{i}@example.com"))
                transport.sent.clear()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert after - before < 64 * 1024, f"grew by {after - before} bytes over 3,000 deletes"
