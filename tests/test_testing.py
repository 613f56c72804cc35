"""mxo_async.testing: the documented way to unit-test code that uses the client."""

from __future__ import annotations

import pytest

import mxo_async as mxo
from mxo_async.testing import FakeClock, MockTransport, Request, json_response

TID = "d290f1ee-6c54-4b01-90e6-d701748f0851"


def answer(request: Request) -> mxo.testing.RawResponse:
    if request.url.endswith("/oauth2token"):
        return json_response(200, {"access_token": "t", "expires_in": 3600})
    return json_response(200, {"tid": TID, "errors": []})


async def test_the_documented_mock_transport_example_works() -> None:
    """A client over MockTransport sends a token request and the activity, and reads the TID."""
    transport = MockTransport(answer)
    async with mxo.MXOClient(
        "https://eu2.thunderhead.com", "SK", "id", "secret", transport=transport, clock=FakeClock()
    ) as client:
        result = await client.send_activity(
            mxo.Customer.by_key("k"), "web://x", mxo.Activity("p", "t")
        )
    assert TID == result.tid
    assert ["POST", "POST"] == [r.method for r in transport.requests]
    body = transport.requests[1].json()
    assert isinstance(body, dict)
    assert "web://x" == body["customerContext"]["baseTouchpointUri"]
    assert transport.closed


async def test_retries_under_the_fake_clock_take_no_real_time() -> None:
    """Backoff waits of a 503 storm are fake: the call gives up after its attempts at once."""
    clock = FakeClock()

    def always_503(request: Request) -> mxo.testing.RawResponse:
        if request.url.endswith("/oauth2token"):
            return json_response(200, {"access_token": "t", "expires_in": 3600})
        return json_response(503)

    async with mxo.MXOClient(
        "https://eu2.thunderhead.com", "SK", "id", "secret",
        transport=MockTransport(always_503), clock=clock,
    ) as client:  # fmt: skip
        with pytest.raises(mxo.ServerError) as caught:
            await client.delete_customer(mxo.Customer.by_key("k"))
    assert 5 == caught.value.attempts
    assert 4 == len(clock.slept)
