"""The call path's guarantees over a fake transport and the fake clock: callbacks cannot change
outcomes, the deadline bounds every wait, closing the client fails waiting calls cleanly, and no
form of a credential survives in an error."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any, Unpack
from urllib.parse import quote

import pytest

import mxo_async as mxo
from mxo_async import Activity, Customer, Timeouts
from mxo_async._clock import Clock, SystemClock

from .fakes import ClientOptions, FakeClock, FakeTransport, Sent, response

ALICE = Customer.by_key("alice@example.com")
OK = {"tid": "t-1", "errors": []}
SECRET = "client-SECRET-value"
TOKEN = "tok-SECRET-1"


def make_client(
    transport: FakeTransport, clock: Clock | None = None, **kwargs: Unpack[ClientOptions]
) -> mxo.MXOClient:
    return mxo.MXOClient(
        "https://eu2.thunderhead.com",
        "ONE-LJBKEO4Y7J-5669",
        "client-id",
        SECRET,
        transport=transport,
        clock=clock or FakeClock(),
        **kwargs,
    )


@pytest.fixture
async def transport() -> AsyncIterator[FakeTransport]:
    yield FakeTransport()


def raising(event: object) -> None:
    raise RuntimeError("a broken dashboard")


# -- callbacks --------------------------------------------------------------------------------------


async def test_a_raising_on_event_changes_no_single_call(transport: FakeTransport) -> None:
    """Every event raises, yet the call succeeds with one request; the failure is counted."""
    transport.handler = lambda sent: response(200, OK)
    async with make_client(transport, on_event=raising) as client:
        result = await client.send_activity(ALICE, "web://x", Activity("p", "t"))
        stats = client.stats
    assert "t-1" == result.tid
    assert 1 == len(transport.api_calls)
    assert stats.callback_errors >= 3  # token refreshed, request sent, response received


async def test_a_raising_on_event_changes_no_batcher_report(transport: FakeTransport) -> None:
    """20 activities stored under a raising on_event: the report says 20 delivered, 0 failed."""
    transport.handler = lambda sent: response(200, OK)
    async with make_client(transport, on_event=raising) as client:
        async with client.batcher(max_activities=2) as batcher:
            for n in range(20):
                await batcher.submit(Customer.by_key(f"c{n % 10}"), "web://x", Activity("p", "t"))
        report = await batcher.aclose()
    assert 20 == report.delivered
    assert 0 == report.failed
    assert 0 == report.ambiguous


async def test_a_raising_on_event_changes_no_fan_out_outcome(transport: FakeTransport) -> None:
    """Fan-out outcomes are all ok although every event handler call raises."""
    transport.handler = lambda sent: response(200, OK)
    requests = [mxo.ActivityRequest(Customer.by_key(f"c{n}"), "web://x", [Activity("p", "t")])
                for n in range(10)]  # fmt: skip
    async with make_client(transport, on_event=raising) as client:
        async with client.send_activities(requests) as outcomes:
            oks = [outcome.ok async for outcome in outcomes]
    assert [True] * 10 == oks


async def test_a_raising_retry_event_does_not_fail_the_retry(transport: FakeTransport) -> None:
    """RetryScheduled raising inside tenacity's before_sleep: the retry still happens."""
    answers = iter([response(503), response(200, OK)])
    transport.handler = lambda sent: next(answers)
    async with make_client(transport, on_event=raising) as client:
        result = await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    assert "t-1" == result.tid
    assert 2 == len(transport.api_calls)


async def test_a_raising_on_progress_loses_no_outcome(transport: FakeTransport) -> None:
    """An on_progress that raises: every item still comes out with its outcome."""
    transport.handler = lambda sent: response(200, OK)
    requests = [mxo.ActivityRequest(Customer.by_key(f"c{n}"), "web://x", [Activity("p", "t")])
                for n in range(10)]  # fmt: skip
    async with make_client(transport) as client:
        async with client.send_activities(requests, on_progress=raising) as outcomes:
            indexes = sorted([outcome.index async for outcome in outcomes])
    assert list(range(10)) == indexes


# -- the deadline bounds every wait ------------------------------------------------------------------


async def test_a_call_waiting_behind_a_pause_gives_up_at_its_deadline(
    transport: FakeTransport,
) -> None:
    """deadline=3 behind a 15 s pause: a not-sent TimeoutError, by the deadline, nothing sent."""
    clock = FakeClock()
    transport.handler = lambda sent: response(200, OK)
    async with make_client(
        transport, clock=clock, timeouts=Timeouts(deadline=3.0), on_event=None
    ) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))  # token fetched
        client._throttle.pause(15.0)
        started = clock.now()
        with pytest.raises(mxo.TimeoutError) as caught:
            await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    assert caught.value.request_sent is False
    assert clock.now() - started <= 3.0
    assert 1 == len(transport.api_calls)


async def test_calls_queued_past_their_deadline_are_never_sent(transport: FakeTransport) -> None:
    """20 calls with deadline=1 behind a 2 s pause: all not sent, none ambiguous, nothing sent."""
    transport.handler = lambda sent: response(200, OK)
    async with make_client(transport, timeouts=Timeouts(deadline=1.0)) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
        client._throttle.pause(2.0)
        results = await asyncio.gather(
            *(client.send_activity(ALICE, "web://x", Activity("p", "t")) for _ in range(20)),
            return_exceptions=True,
        )
    assert 20 == sum(isinstance(r, mxo.TimeoutError) and not r.request_sent for r in results)
    assert 1 == len(transport.api_calls)


# -- closing while calls wait ------------------------------------------------------------------------


async def test_closing_while_calls_wait_for_the_first_token_fails_them_cleanly(
    transport: FakeTransport,
) -> None:
    """aclose() during the first token request: the waiting calls get ClientClosedError."""
    release = asyncio.Event()

    async def slow_token(sent: Sent) -> Any:
        await release.wait()
        return response(200, {"access_token": TOKEN, "expires_in": 3600})

    transport.token_handler = slow_token
    # Real time: the token request waits on an event, which a fake clock would jump past.
    client = make_client(transport, clock=SystemClock())
    calls = [
        asyncio.create_task(client.send_activity(ALICE, "web://x", Activity("p", "t")))
        for _ in range(5)
    ]
    await asyncio.sleep(0.01)
    await client.aclose()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert [mxo.ClientClosedError] * 5 == [type(r) for r in results]
    assert [] == transport.api_calls


async def test_a_closed_client_sends_nothing(transport: FakeTransport) -> None:
    """A call after aclose() raises ClientClosedError before any request."""
    client = make_client(transport)
    await client.aclose()
    with pytest.raises(mxo.ClientClosedError):
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    assert [] == transport.sent


# -- secrets, in every form --------------------------------------------------------------------------


def basic() -> str:
    return base64.b64encode(f"client-id:{SECRET}".encode()).decode()


@pytest.mark.parametrize(
    "echo",
    [
        SECRET,
        basic(),
        json.dumps({"errorMessage": f"bad {SECRET}"}),
        json.dumps({"errorMessage": "x"})[:-1] + ', "e": "' + SECRET.replace("-", "\\u002d") + '"}',
        quote(SECRET, safe=""),
    ],
)
async def test_a_token_endpoint_echo_never_shows_a_credential(
    transport: FakeTransport, echo: str
) -> None:
    """A token endpoint 5xx echoing the credentials in any form: none survives in the error."""
    body = json.dumps({"errorMessage": f"echo: {echo}"}) if not echo.startswith("{") else echo
    transport.token_handler = lambda sent: response(500, body.encode())
    async with make_client(transport, retry=mxo.RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(mxo.MXOError) as caught:
            await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    text = str(caught.value)
    assert SECRET not in text
    assert basic() not in text


async def test_an_api_error_echoing_the_token_hides_it(transport: FakeTransport) -> None:
    """An API 400 that quotes the Bearer token (JSON-escaped) shows no token."""
    escaped = TOKEN.replace("-", "\\u002d")
    transport.handler = lambda sent: response(
        400, ('{"errorCode": "GENERAL", "errorMessage": "Bearer ' + escaped + '"}').encode()
    )
    async with make_client(transport) as client:
        with pytest.raises(mxo.BadRequestError) as caught:
            await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    assert TOKEN not in str(caught.value)
    assert "GENERAL" == caught.value.code


async def test_an_authentication_error_counts_the_token_attempts(transport: FakeTransport) -> None:
    """Refused credentials: AuthenticationError.attempts is the token request's attempt count."""
    transport.token_handler = lambda sent: response(401, {"error": "invalid_client"})
    async with make_client(transport) as client:
        with pytest.raises(mxo.AuthenticationError) as caught:
            await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    assert 1 == caught.value.attempts
    assert [] == transport.api_calls
