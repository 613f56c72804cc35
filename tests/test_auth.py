"""Token manager: single-flight, proactive soft/hard windows, reactive invalidation."""

from __future__ import annotations

import asyncio
import random

import pytest

import mxo_async as mxo
from mxo_async._auth import TokenManager
from mxo_async._errors import (
    AmbiguousDeliveryError,
    AuthenticationError,
    ResponseFormatError,
    ServerError,
    TransportError,
    status_error,
)
from mxo_async._errors import TimeoutError as MXOTimeoutError
from mxo_async._wire import TokenGrant

from .fakes import FakeClock, FakeTransport, Sent, response


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    """Counts fetches; each returns a new token, optionally after a gate opens."""

    def __init__(self, lifetime: float | None = 100.0) -> None:
        self.count = 0
        self.lifetime = lifetime
        self.gate: asyncio.Event | None = None
        self.fail_with: Exception | None = None

    async def __call__(self) -> TokenGrant:
        self.count += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return TokenGrant(f"token-{self.count}", self.lifetime)


def manager(fetch: Fetcher, clock: Clock, default_lifetime: float = 3600.0) -> TokenManager:
    return TokenManager(
        fetch,
        clock=clock,
        rng=random.Random(0),
        soft_window=20,
        hard_window=5,
        default_lifetime=default_lifetime,
    )


async def test_concurrent_callers_share_one_fetch() -> None:
    """Many callers waiting for the first token cause one fetch and get the same token."""
    fetch, clock = Fetcher(), Clock()
    fetch.gate = asyncio.Event()
    tokens = manager(fetch, clock)
    waiters = [asyncio.create_task(tokens.get()) for _ in range(100)]
    await asyncio.sleep(0)
    fetch.gate.set()
    results = await asyncio.gather(*waiters)
    assert (1, {"token-1"}) == (fetch.count, {t.value for t in results})


async def test_valid_token_is_returned_without_fetching() -> None:
    """Before the soft window the cached token is reused."""
    fetch, clock = Fetcher(), Clock()
    tokens = manager(fetch, clock)
    first = await tokens.get()
    clock.now += 50
    assert first is await tokens.get()
    assert 1 == fetch.count


async def test_soft_window_refreshes_in_background_and_keeps_serving() -> None:
    """Inside the soft window callers get the current token at once while a refresh runs."""
    fetch, clock = Fetcher(), Clock()
    tokens = manager(fetch, clock)
    first = await tokens.get()
    fetch.gate = asyncio.Event()
    clock.now += 90  # 10 s left: past any jittered soft start (80..90 s), before the hard window
    assert first is await tokens.get()
    await asyncio.sleep(0)
    assert 2 == fetch.count
    fetch.gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert "token-2" == (await tokens.get()).value


async def test_hard_window_blocks_for_the_new_token() -> None:
    """In the last seconds callers wait for the new token instead of using the old one."""
    fetch, clock = Fetcher(), Clock()
    tokens = manager(fetch, clock)
    await tokens.get()
    clock.now += 97
    assert "token-2" == (await tokens.get()).value


async def test_short_lifetimes_scale_the_windows() -> None:
    """A 1 s token refreshes inside its own lifetime rather than on every call."""
    fetch, clock = Fetcher(lifetime=1.0), Clock()
    tokens = manager(fetch, clock)
    first = await tokens.get()
    clock.now += 0.5
    assert first is await tokens.get()
    assert 1 == fetch.count


async def test_missing_lifetime_uses_the_default() -> None:
    """A grant without expires_in lives for default_lifetime."""
    fetch, clock = Fetcher(lifetime=None), Clock()
    tokens = manager(fetch, clock, default_lifetime=600)
    token = await tokens.get()
    assert 1600.0 == token.expires_at


async def test_invalidate_only_drops_the_token_that_was_sent() -> None:
    """A stale 401 for an old token does not drop its replacement."""
    fetch, clock = Fetcher(), Clock()
    tokens = manager(fetch, clock)
    old = await tokens.get()
    tokens.invalidate(old)
    new = await tokens.get()
    tokens.invalidate(old)
    assert new is await tokens.get()
    assert 2 == fetch.count


async def test_cancelled_waiter_does_not_cancel_the_refresh() -> None:
    """Cancelling one waiter leaves the shared refresh running for the others."""
    fetch, clock = Fetcher(), Clock()
    fetch.gate = asyncio.Event()
    tokens = manager(fetch, clock)
    first = asyncio.create_task(tokens.get())
    second = asyncio.create_task(tokens.get())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    fetch.gate.set()
    assert "token-1" == (await second).value
    assert first.cancelled() and 1 == fetch.count


async def test_failed_fetch_reaches_every_waiter_and_is_retried_next_time() -> None:
    """A refused refresh raises for all current waiters; the next call fetches again."""
    fetch, clock = Fetcher(), Clock()
    fetch.fail_with = AuthenticationError("refused", 401)
    tokens = manager(fetch, clock)
    results = await asyncio.gather(tokens.get(), tokens.get(), return_exceptions=True)
    assert all(isinstance(r, AuthenticationError) for r in results)
    fetch.fail_with = None
    assert "token-2" == (await tokens.get()).value


async def test_background_failure_keeps_the_old_token() -> None:
    """A failed proactive refresh is logged, and the still-valid token keeps being served."""
    fetch, clock = Fetcher(), Clock()
    tokens = manager(fetch, clock)
    first = await tokens.get()
    fetch.fail_with = RuntimeError("token endpoint down")
    clock.now += 90
    assert first is await tokens.get()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert (2, first) == (fetch.count, tokens.current)


async def test_token_value_is_not_in_repr() -> None:
    """The access token and its header never show in a repr."""
    tokens = manager(Fetcher(), Clock())
    token = await tokens.get()
    assert "token-1" not in repr(token)


async def test_aclose_cancels_a_refresh_in_flight() -> None:
    """Closing stops a pending refresh without leaving a task behind."""
    fetch, clock = Fetcher(), Clock()
    fetch.gate = asyncio.Event()
    tokens = manager(fetch, clock)
    waiter = asyncio.create_task(tokens.get())
    await asyncio.sleep(0)
    await tokens.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiter


# -- a failed token request, as the calls waiting for it see it (issue 13, item 14) -------------


async def test_token_reset_reaches_waiters_as_not_sent() -> None:
    """A reset of the token request (request_sent=True) reaches waiters as request_sent=False."""
    fetch, clock = Fetcher(), Clock()
    fetch.fail_with = TransportError("POST failed: ServerDisconnectedError")
    with pytest.raises(TransportError) as info:
        await manager(fetch, clock).get()
    assert (
        False,
        "token request failed, request not sent: POST failed: ServerDisconnectedError",
    ) == (
        info.value.request_sent,
        str(info.value),
    )


async def test_token_timeout_stays_a_timeout_error_not_sent() -> None:
    """A timed-out token request reaches waiters as a TimeoutError with request_sent=False."""
    fetch, clock = Fetcher(), Clock()
    fetch.fail_with = MXOTimeoutError("POST got no complete response within 30 s")
    with pytest.raises(MXOTimeoutError) as info:
        await manager(fetch, clock).get()
    assert False is info.value.request_sent


async def test_unusable_token_answer_reaches_waiters_as_authentication_error() -> None:
    """A token answer without a usable token is an AuthenticationError for the waiting calls.

    A ResponseFormatError from an API call means "applied, answer unreadable"; these calls sent
    nothing.
    """
    fetch, clock = Fetcher(), Clock()
    fetch.fail_with = ResponseFormatError("token: 'access_token' is not an RFC 6750 bearer token")
    with pytest.raises(AuthenticationError, match="no usable token, request not sent"):
        await manager(fetch, clock).get()


async def test_token_endpoint_status_error_keeps_its_class() -> None:
    """A 503 from the token endpoint stays a ServerError(503) that names the token endpoint."""
    fetch, clock = Fetcher(), Clock()
    fetch.fail_with = status_error(503, "busy", 2.0)
    with pytest.raises(ServerError) as info:
        await manager(fetch, clock).get()
    assert (503, 2.0, "token endpoint: busy") == (
        info.value.status,
        info.value.retry_after,
        info.value.message,
    )


async def test_send_after_token_reset_is_not_sent_and_not_ambiguous() -> None:
    """send_activity whose token request is reset raises TransportError(request_sent=False)."""

    def reset(sent: Sent) -> object:
        raise TransportError("POST failed: ServerDisconnectedError")

    transport = FakeTransport(token_handler=reset)  # type: ignore[arg-type]
    client = mxo.MXOClient(
        "https://eu2.thunderhead.com",
        "S",
        "id",
        "secret",
        transport=transport,
        clock=FakeClock(),
        retry=mxo.RetryPolicy(max_attempts=2),
    )
    async with client:
        with pytest.raises(TransportError) as info:
            await client.send_activity(mxo.Customer.by_key("k"), "atm://a", mxo.Activity("p", "t"))
    assert (False, False, 0, 2) == (
        isinstance(info.value, AmbiguousDeliveryError),
        info.value.request_sent,
        len(transport.api_calls),
        len(transport.token_calls),
    )


async def test_token_after_a_failed_refresh_is_usable() -> None:
    """After an unusable token answer, the next call fetches a new token and succeeds."""
    answers = [
        response(200, {"access_token": "bad\r\ntoken"}),
        response(200, {"access_token": "ok"}),
    ]
    transport = FakeTransport(
        lambda sent: response(200, {"tid": "t-1", "errors": []}),
        token_handler=lambda sent: answers.pop(0),
    )
    client = mxo.MXOClient(
        "https://eu2.thunderhead.com", "S", "id", "secret", transport=transport, clock=FakeClock()
    )
    async with client:
        with pytest.raises(AuthenticationError):
            await client.send_activity(mxo.Customer.by_key("k"), "atm://a", mxo.Activity("p", "t"))
        result = await client.send_activity(
            mxo.Customer.by_key("k"), "atm://a", mxo.Activity("p", "t")
        )
    assert ("t-1", "Bearer ok") == (result.tid, transport.api_calls[0].headers["Authorization"])
