"""MXOClient on contract v2: rejected activities, the 404 rule, 403, identifiers and devices."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Unpack

import orjson
import pytest

import mxo_async as mxo
from mxo_async import Activity, Customer, Device

from .fakes import ClientOptions, FakeClock, FakeTransport, Sent, response

ALICE = Customer.by_key("alice@example.com")
REJECTED = {
    "tid": "t-1",
    "errors": [
        {
            "errorCode": "INVALID_PROPOSITION_CODE",
            "errorMessage": "The specified proposition code does not exist",
            "activity": {"propositionCode": "nope", "activityTypeCode": "view"},
        }
    ],
}


def make_client(transport: FakeTransport, **kwargs: Unpack[ClientOptions]) -> mxo.MXOClient:
    return mxo.MXOClient(
        "https://eu2.thunderhead.com",
        "ONE-LJBKEO4Y7J-5669",
        "client-id",
        "client-SECRET-value",
        transport=transport,
        clock=FakeClock(),
        **kwargs,
    )


def body(sent: Sent) -> Any:
    assert sent.body is not None
    return orjson.loads(sent.body)


@pytest.fixture
async def transport() -> AsyncIterator[FakeTransport]:
    yield FakeTransport()


async def test_rejected_activities_raise_and_are_not_retried(transport: FakeTransport) -> None:
    """A 200 listing rejected activities raises RejectedActivitiesError after one request."""
    transport.handler = lambda sent: response(200, REJECTED)
    async with make_client(transport) as client:
        with pytest.raises(mxo.RejectedActivitiesError) as caught:
            await client.send_activity(
                ALICE, "web://x", [Activity("nope", "view"), Activity("ok", "view")]
            )
    assert 1 == len(transport.api_calls)
    assert 1 == caught.value.attempts
    assert ["INVALID_PROPOSITION_CODE"] == [error.code for error in caught.value.rejected]
    assert Activity("nope", "view") == caught.value.rejected[0].activity


async def test_fan_out_outcome_of_a_rejected_request_is_not_ok(transport: FakeTransport) -> None:
    """In send_activities a partially rejected request's outcome carries the rejection."""
    transport.handler = lambda sent: response(200, REJECTED)
    requests = [mxo.ActivityRequest(ALICE, "web://x", [Activity("nope", "view")])]
    async with make_client(transport) as client:
        async with client.send_activities(requests) as outcomes:
            settled = [outcome async for outcome in outcomes]
    assert [False] == [outcome.ok for outcome in settled]
    assert isinstance(settled[0].error, mxo.RejectedActivitiesError)


async def test_a_404_without_customer_not_found_is_an_error(transport: FakeTransport) -> None:
    """A wrong site key (404 INVALID_SITEKEY) never reads as 'customer erased'."""
    transport.handler = lambda sent: response(
        404, {"errorCode": "INVALID_SITEKEY", "errorMessage": "unknown site key"}
    )
    async with make_client(transport) as client:
        with pytest.raises(mxo.NotFoundError) as caught:
            await client.delete_customer(ALICE)
    assert "INVALID_SITEKEY" == caught.value.code
    assert 1 == len(transport.api_calls)


async def test_a_sweep_with_a_wrong_site_key_erases_nobody(transport: FakeTransport) -> None:
    """Every outcome of a sweep against unknown routes is a failure, none is found=False."""
    transport.handler = lambda sent: response(404, b"<html>Not Found</html>")
    customers = [Customer.by_key(f"user-{i}@example.com") for i in range(5)]
    async with make_client(transport) as client:
        async with client.delete_customers(customers) as outcomes:
            errors = [type(outcome.error) async for outcome in outcomes]
    assert [mxo.NotFoundError] * 5 == errors


async def test_a_forbidden_delete_is_not_retried(transport: FakeTransport) -> None:
    """403 (no delete permission) raises ForbiddenError after one request."""
    transport.handler = lambda sent: response(
        403, {"errorCode": "GENERAL", "errorMessage": "User lacks permissions"}
    )
    async with make_client(transport) as client:
        with pytest.raises(mxo.ForbiddenError):
            await client.delete_customer(ALICE)
    assert 1 == len(transport.api_calls)


async def test_delete_sends_a_json_body_without_query(transport: FakeTransport) -> None:
    """The DELETE goes to {root} with the identifier in a JSON body."""
    transport.handler = lambda sent: response(200, {"tids": ["t-1"], "identifiers": []})
    async with make_client(transport) as client:
        await client.delete_customer(ALICE)
    sent = transport.api_calls[0]
    assert "https://eu2.thunderhead.com/one/oauth2/rt/api/3.1.0/customer/ONE-LJBKEO4Y7J-5669" == (
        sent.url
    )
    assert {"identifier": {"apiName": "customerkey", "value": "alice@example.com"}} == body(sent)
    assert "application/json" == sent.headers["Content-Type"]


async def test_the_key_attribute_is_configurable(transport: FakeTransport) -> None:
    """customer_key_attribute names the key's attribute on every request."""
    async with make_client(transport, customer_key_attribute="email") as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    identifiers = body(transport.api_calls[0])["customerContext"]["identifiers"]
    assert [{"apiName": "email", "value": "alice@example.com"}] == identifiers


def test_the_key_attribute_comes_from_the_environment() -> None:
    """MXO_CUSTOMER_KEY_ATTRIBUTE sets customer_key_attribute."""
    env = {
        "MXO_BASE_URL": "https://eu2.thunderhead.com",
        "MXO_SITE_KEY": "SK",
        "MXO_CLIENT_ID": "id",
        "MXO_CLIENT_SECRET": "secret",
        "MXO_CUSTOMER_KEY_ATTRIBUTE": "email",
    }
    client = mxo.MXOClient.from_env(env, transport=FakeTransport())
    assert "email" == client.target["customer_key_attribute"]


@pytest.mark.parametrize("attribute", ["", "two words"])
def test_a_bad_key_attribute_is_refused(attribute: str) -> None:
    """An empty or spaced attribute API name is a ValidationError at construction."""
    with pytest.raises(mxo.ValidationError):
        make_client(FakeTransport(), customer_key_attribute=attribute)


async def test_a_device_travels_with_activities_and_structures(transport: FakeTransport) -> None:
    """device= reaches customerContext.device on both POST calls."""
    transport.handler = lambda sent: response(
        200,
        {"tid": "t-1", "errors": []}
        if sent.url.endswith("/activity")
        else {"structureApiName": "s", "tid": "t-1", "structure": {}},
    )
    device = Device("App", "SMARTPHONE", "IOS", os_version="17.1")
    async with make_client(transport) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"), device=device)
        await client.get_structure(ALICE, "web://x", "s", device=device)
    expected = {"appName": "App", "devType": "SMARTPHONE", "osName": "IOS", "osVer": "17.1"}
    assert [expected, expected] == [
        body(sent)["customerContext"]["device"] for sent in transport.api_calls
    ]


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Device("App", "PHONE", "IOS"), "device.dev_type"),
        (lambda: Device("App", "SMARTPHONE", "ios"), "device.os_name"),
        (lambda: Device("", "SMARTPHONE", "IOS"), "device.app_name"),
        (lambda: Device("App", "SMARTPHONE", "IOS", latitude=91.0), "device.latitude"),
        (lambda: Device("App", "SMARTPHONE", "IOS", longitude=float("nan")), "device.longitude"),
        (lambda: Device("App", "OTHER", "OTHER", location_accuracy=-1), "device.location_accuracy"),
        (lambda: Customer(identifiers={"e mail": "a"}), "customer.identifiers"),
        (lambda: Customer(identifiers={"email": ""}), "customer.identifiers['email']"),
        (lambda: Customer(), "customer"),
    ],
)
def test_bad_devices_and_identifiers_are_validation_errors(make: Any, field: str) -> None:
    """Devices and identifiers are validated on construction, naming the field."""
    with pytest.raises(mxo.ValidationError) as caught:
        make()
    assert field == caught.value.field


async def test_a_device_that_is_not_a_device_is_refused_before_io(
    transport: FakeTransport,
) -> None:
    """device= must be a Device; nothing is sent otherwise (not even a token request)."""
    async with make_client(transport) as client:
        with pytest.raises(mxo.ValidationError):
            # a dict where a Device belongs, on purpose: validation is tested
            await client.get_structure(ALICE, "web://x", "s", device={"appName": "x"})  # type: ignore[call-overload]
    assert [] == transport.sent


async def test_deleting_several_identifiers_without_tid_sends_nothing(
    transport: FakeTransport,
) -> None:
    """Which identifier decides the erasure is ambiguous: ValidationError, no request."""
    customer = Customer(key="a@x", identifiers={"email": "b@x"})
    async with make_client(transport) as client:
        with pytest.raises(mxo.ValidationError):
            await client.delete_customer(customer)
    assert [] == transport.sent


async def test_deleting_a_customer_with_tid_and_identifiers_sends_the_tid(
    transport: FakeTransport,
) -> None:
    """With a TID, the TID names the customer to delete."""
    transport.handler = lambda sent: response(200, {"tids": ["t-9"], "identifiers": []})
    customer = Customer("t-9", "a@x", {"email": "b@x"})
    async with make_client(transport) as client:
        erasure = await client.delete_customer(customer)
    assert {"tid": "t-9"} == body(transport.api_calls[0])
    assert ("t-9",) == erasure.tids


def test_identifiers_are_read_only_and_hashable() -> None:
    """A Customer's identifiers cannot be changed after validation; equal customers hash equal."""
    customer = Customer(identifiers={"email": "a@x", "crm": "1"})
    with pytest.raises(TypeError):
        customer.identifiers["email"] = "b@x"  # type: ignore[index]  # the write must be refused
    assert hash(customer) == hash(Customer(identifiers={"crm": "1", "email": "a@x"}))


def test_customer_repr_masks_identifiers() -> None:
    """Keys and identifier values never show in full in a repr or masked()."""
    customer = Customer(key="alice@example.com", identifiers={"email": "alice@example.com"})
    assert "alice@example.com" not in repr(customer)
    assert "alice@example.com" not in customer.masked()


async def test_a_structure_into_a_class_is_a_structure_of_it(transport: FakeTransport) -> None:
    """get_structure(into=cls) returns Structure[cls] with the envelope's TID."""
    import attrs

    @attrs.frozen
    class Profile:
        tier: str

    transport.handler = lambda sent: response(
        200, {"structureApiName": "p", "tid": "t-1", "structure": {"tier": "gold"}}
    )
    async with make_client(transport) as client:
        structure = await client.get_structure(ALICE, "web://x", "p", into=Profile)
    assert mxo.Structure("p", "t-1", Profile("gold")) == structure


def test_requests_with_identifiers_and_devices_pickle() -> None:
    """A request (customer with identifiers, device) survives pickling, e.g. to a worker process."""
    import pickle

    request = mxo.ActivityRequest(
        Customer("t-1", "a@x", {"email": "a@x"}),
        "web://x",
        [Activity("p", "t")],
        {"campaign": "summer"},
        Device("App", "TABLET", "ANDROID"),
    )
    assert request == pickle.loads(pickle.dumps(request))  # noqa: S301 - our own bytes


def test_public_types_carry_the_public_module() -> None:
    """Tracebacks name mxo_async.ServerError, not the private module that defines it."""
    assert "mxo_async" == mxo.ServerError.__module__
    assert "mxo_async" == mxo.Customer.__module__
