"""Secrets and customer keys stay out of logs, reprs, events and exception texts."""

from __future__ import annotations

import logging

import orjson
import pytest

import mxo_async as mxo
from mxo_async import Activity, Customer, RetryPolicy
from mxo_async._transport import RawResponse

from .fakes import FakeClock, FakeTransport, Sent, response

SECRET = "client-SECRET-value"
TOKEN = "tok-SECRET-1"
KEY = "alice.private@example.com"


def echo_everything(sent: Sent) -> RawResponse:
    """A hostile server that echoes credentials, the token and the customer key in errors."""
    auth = sent.headers.get("Authorization", "")
    return response(
        500,
        {"statusCode": 500, "errorMessage": f"boom {auth} {SECRET} {TOKEN}"},
        {"Retry-After": "0"},
    )


async def test_nothing_secret_reaches_logs_reprs_events_or_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every entry point at DEBUG, with failures, leaks neither secret, token nor raw key."""
    caplog.set_level(logging.DEBUG, logger="mxo_async")
    events: list[mxo.Event] = []
    texts: list[str] = []
    transport = FakeTransport(handler=echo_everything)
    client = mxo.MXOClient(
        "https://eu2.thunderhead.com",
        "ONE-LJBKEO4Y7J-5669",
        "client-id",
        SECRET,
        transport=transport,
        clock=FakeClock(),
        retry=RetryPolicy(max_attempts=2),
        on_event=events.append,
    )
    customer = Customer.by_key(KEY)
    async with client:
        calls = [
            client.send_activity(customer, "atm://atm", [Activity("atm", "x")]),
            client.get_structure(customer, "web://x", "p"),
            client.delete_customer(customer),
        ]
        for call in calls:
            with pytest.raises(mxo.MXOError) as info:
                await call
            error: BaseException | None = info.value
            while error is not None:
                texts += [str(error), repr(error)]
                error = error.__cause__
        texts += [repr(client), repr(client.stats), repr(customer), repr(client._tokens.current)]
    transport.token_handler = lambda sent: response(
        401, {"error": "invalid_client", "error_description": SECRET}
    )
    async with mxo.MXOClient(
        "https://eu2.thunderhead.com",
        "s",
        "client-id",
        SECRET,
        transport=transport,
        clock=FakeClock(),
    ) as refused:
        with pytest.raises(mxo.AuthenticationError) as auth_info:
            await refused.delete_customer(customer)
        texts += [str(auth_info.value), repr(auth_info.value)]
    texts += [repr(e) for e in events]
    texts += [r.getMessage() for r in caplog.records]
    assert caplog.records, "DEBUG logging produced no records to scan"
    haystack = "\n".join(texts)
    assert SECRET not in haystack
    assert TOKEN not in haystack
    assert KEY not in haystack


async def test_the_wire_still_carries_the_real_values() -> None:
    """Redaction is for humans only: the request itself carries the real key and token."""
    transport = FakeTransport()
    async with mxo.MXOClient(
        "https://eu2.thunderhead.com",
        "s",
        "client-id",
        SECRET,
        transport=transport,
        clock=FakeClock(),
    ) as client:
        await client.send_activity(Customer.by_key(KEY), "atm://atm", [Activity("atm", "x")])
    sent = transport.api_calls[0]
    assert KEY == orjson.loads(sent.body or b"")["customerContext"]["identifiers"][0]["value"]
    assert f"Bearer {TOKEN}" == sent.headers["Authorization"]
