"""The emulator answers raw HTTP exactly as the wire contract (docs/wire-contract.md) says (driven with aiohttp, not our client)."""

from __future__ import annotations

import asyncio
import base64
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import orjson
import pytest
from click.testing import CliRunner

import mxo_async.emulator.__main__ as emulator_module
from mxo_async import Activity, Customer, MXOClient
from mxo_async.cli import _emulator as emulator_command
from mxo_async.emulator import Catalogue, Emulator, EmulatorConfig, Faults

pytest_plugins = ["pytester"]

TID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
KEY = "alice@example.com"
EMAIL = "alice.smith@example.com"
OTHER_TID = "a08b10a4-ead9-7667-9116-add167624b57"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ERROR_KEYS = ["errorCode", "errorMessage"]

Body = dict[str, Any]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def basic(client_id: str, client_secret: str) -> str:
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def identifier(value: str = KEY, api_name: str = "customerkey") -> dict[str, str]:
    return {"apiName": api_name, "value": value}


def activity_body(
    key: str | None = KEY, activities: list[dict[str, str]] | None = None, **context: Any
) -> Body:
    customer_context: Body = {"baseTouchpointUri": "atm://atm", **context}
    if key is not None:
        customer_context.setdefault("identifiers", [identifier(key)])
    if activities is None:
        activities = [{"propositionCode": "atm", "activityTypeCode": "balance_inquiry"}]
    return {"customerContext": customer_context, "activities": activities}


def structure_body(name: str, key: str | None = KEY, **properties: str) -> Body:
    context: Body = {"baseTouchpointUri": "web://bank.com"}
    if key is not None:
        context["identifiers"] = [identifier(key)]
    if properties:
        context["properties"] = [{"name": n, "value": v} for n, v in properties.items()]
    return {"customerContext": context, "structureApiName": name}


class Wire:
    """Raw HTTP against one emulator, with a token fetched once."""

    def __init__(self, http: aiohttp.ClientSession, emu: Emulator) -> None:
        self.http = http
        self.emu = emu
        self.token: str | None = None

    async def fetch_token(self) -> tuple[int, Body]:
        headers = {
            "Authorization": basic(self.emu.client_id, self.emu.client_secret),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        async with self.http.post(
            self.emu.token_url, data=b"grant_type=client_credentials", headers=headers
        ) as resp:
            return resp.status, orjson.loads(await resp.read())

    async def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        query: str = "",
        raw: bytes | None = None,
        token: str | None = None,
        root: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        if token is None:
            if self.token is None:
                _, grant = await self.fetch_token()
                self.token = str(grant["access_token"])
            token = self.token
        payload = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        url = (root or self.emu.api_root()) + path + (f"?{query}" if query else "")
        async with self.http.request(method, url, data=payload, headers=headers) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def activity(self, body: object, **kwargs: Any) -> tuple[int, Body]:
        status, _, raw = await self.call("POST", "/activity", body, **kwargs)
        return status, orjson.loads(raw)

    async def structure(self, body: object, **kwargs: Any) -> tuple[int, Body]:
        status, _, raw = await self.call("POST", "/structure", body, **kwargs)
        return status, orjson.loads(raw)

    async def delete(self, body: object, **kwargs: Any) -> tuple[int, Body]:
        status, _, raw = await self.call("DELETE", "", body, **kwargs)
        return status, orjson.loads(raw)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def wire(http: aiohttp.ClientSession, mxo_emulator: Emulator) -> Wire:
    return Wire(http, mxo_emulator)


@pytest.fixture
async def clock_emulator() -> AsyncIterator[tuple[Emulator, FakeClock]]:
    clock = FakeClock()
    async with Emulator(EmulatorConfig(token_ttl=0.05), clock=clock) as emu:
        yield emu, clock


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """The configuration of the ``tenant`` fixture; tests override it with parametrize."""
    return EmulatorConfig()


@pytest.fixture
async def tenant(
    http: aiohttp.ClientSession, emulator_config: EmulatorConfig
) -> AsyncIterator[tuple[Wire, Emulator]]:
    """An emulator configured by ``emulator_config`` whose wall clock reads NOW."""
    async with Emulator(emulator_config, now=lambda: NOW) as emu:
        yield Wire(http, emu), emu


def configured(**fields: Any) -> pytest.MarkDecorator:
    """Parametrize the ``tenant`` fixture's configuration."""
    return pytest.mark.parametrize("emulator_config", [EmulatorConfig(**fields)])


# --- token endpoint -------------------------------------------------------------------------


async def test_token_endpoint_issues_a_bearer_token(wire: Wire) -> None:
    """Valid Basic credentials and the client_credentials grant yield a Bearer token."""
    status, data = await wire.fetch_token()
    assert 200 == status
    assert "Bearer" == data["token_type"]
    assert 3600 == data["expires_in"]
    assert isinstance(data["access_token"], str)
    assert data["access_token"]


async def test_token_endpoint_rejects_a_wrong_secret(
    http: aiohttp.ClientSession, mxo_emulator: Emulator
) -> None:
    """A wrong client secret is answered 401 invalid_client."""
    headers = {"Authorization": basic(mxo_emulator.client_id, "nope")}
    async with http.post(
        mxo_emulator.token_url, data=b"grant_type=client_credentials", headers=headers
    ) as resp:
        assert 401 == resp.status
        assert "invalid_client" == (await resp.json())["error"]


async def test_token_endpoint_rejects_missing_credentials(
    http: aiohttp.ClientSession, mxo_emulator: Emulator
) -> None:
    """A token request without an Authorization header is answered 401 invalid_client."""
    async with http.post(mxo_emulator.token_url, data=b"grant_type=client_credentials") as resp:
        assert 401 == resp.status
        assert "invalid_client" == (await resp.json())["error"]


async def test_token_endpoint_rejects_other_grants(
    http: aiohttp.ClientSession, mxo_emulator: Emulator
) -> None:
    """A grant other than client_credentials is answered 400 unsupported_grant_type."""
    headers = {"Authorization": basic(mxo_emulator.client_id, mxo_emulator.client_secret)}
    async with http.post(
        mxo_emulator.token_url, data=b"grant_type=password", headers=headers
    ) as resp:
        assert 400 == resp.status
        assert "unsupported_grant_type" == (await resp.json())["error"]


async def test_token_endpoint_form_decodes_credentials(http: aiohttp.ClientSession) -> None:
    """Credentials are form-encoded before Basic encoding, so reserved characters survive."""
    config = EmulatorConfig(client_id="id with space", client_secret="s3:cr&t+%")
    async with Emulator(config) as emu:
        status, _ = await Wire(http, emu).fetch_token()
    assert status == 200


# --- bearer and site key --------------------------------------------------------------------


async def test_api_call_without_bearer_is_unauthorized(
    http: aiohttp.ClientSession, mxo_emulator: Emulator
) -> None:
    """An API call without a bearer token gets 401 with an errorCode/errorMessage body."""
    url = mxo_emulator.api_root() + "/activity"
    async with http.post(url, data=orjson.dumps(activity_body())) as resp:
        status, data = resp.status, await resp.json()
    assert 401 == status
    assert {"errorCode": "GENERAL", "errorMessage": "missing bearer token"} == data


async def test_revoked_token_is_unauthorized(wire: Wire, mxo_emulator: Emulator) -> None:
    """After revoke_tokens a previously valid token gets 401."""
    assert (await wire.activity(activity_body()))[0] == 200
    mxo_emulator.revoke_tokens()
    assert (await wire.activity(activity_body()))[0] == 401


async def test_expired_token_is_unauthorized(
    http: aiohttp.ClientSession, clock_emulator: tuple[Emulator, FakeClock]
) -> None:
    """A token used after token_ttl seconds of the monotonic clock gets 401."""
    emu, clock = clock_emulator
    wire = Wire(http, emu)
    assert (await wire.activity(activity_body()))[0] == 200
    clock.now += 0.05
    status, data = await wire.activity(activity_body())
    assert 401 == status
    assert "access token expired" == data["errorMessage"]


async def test_fractional_ttl_is_reported_as_is(
    http: aiohttp.ClientSession, clock_emulator: tuple[Emulator, FakeClock]
) -> None:
    """A fractional token_ttl is sent as a fractional expires_in."""
    _, data = await Wire(http, clock_emulator[0]).fetch_token()
    assert data["expires_in"] == 0.05


@pytest.mark.parametrize(("method", "path"), [("POST", "/activity"), ("DELETE", "")])
async def test_unknown_site_key_is_invalid_sitekey(
    wire: Wire, mxo_emulator: Emulator, method: str, path: str
) -> None:
    """An API call for another site key gets 404 INVALID_SITEKEY, never CUSTOMER_NOT_FOUND."""
    root = mxo_emulator.api_root().replace(mxo_emulator.site_key, "ONE-OTHEROTHER-0002")
    status, _, raw = await wire.call(method, path, {"tid": OTHER_TID}, root=root)
    assert 404 == status
    assert "INVALID_SITEKEY" == orjson.loads(raw)["errorCode"]


# --- strictness: query strings, routes, unknown members ---------------------------------------

CALLS = {
    "activity": ("POST", "/activity", activity_body()),
    "structure": ("POST", "/structure", structure_body("activitySummary")),
    "delete": ("DELETE", "", {"identifier": identifier()}),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("query", [f"tid={OTHER_TID}", "customerKey=alice", "x"])
async def test_query_string_is_bad_request(
    wire: Wire, mxo_emulator: Emulator, call: str, query: str
) -> None:
    """Any query string on an API call is a 400 GENERAL, and nothing is applied."""
    method, path, body = CALLS[call]
    mxo_emulator.add_customer(KEY)
    status, _, raw = await wire.call(method, path, body, query=query)
    assert 400 == status
    assert "GENERAL" == orjson.loads(raw)["errorCode"]
    assert 0 == mxo_emulator.counters.applied_activities
    assert 0 == mxo_emulator.counters.deletes_applied


async def test_trailing_slash_delete_is_an_unknown_route(
    wire: Wire, mxo_emulator: Emulator
) -> None:
    """DELETE {root}/ (trailing slash) is aiohttp's plain 404 for an unknown route: no
    CUSTOMER_NOT_FOUND, and the customer is still there."""
    tid = mxo_emulator.add_customer(KEY)
    status, headers, _ = await wire.call("DELETE", "/", {"identifier": identifier()})
    stored = mxo_emulator.customer(KEY)
    assert 404 == status
    assert "text/plain" == headers["Content-Type"].split(";")[0]
    assert stored is not None
    assert (tid,) == stored.tids


_DEVICE = {"appName": "CustomerFirst", "devType": "SMARTPHONE", "osName": "IOS"}
_ACT = {"propositionCode": "atm", "activityTypeCode": "balance"}
UNKNOWN_MEMBERS: dict[str, tuple[str, str, Body]] = {
    "activity body": ("POST", "/activity", {**activity_body(), "tid": OTHER_TID}),
    "customerContext": ("POST", "/activity", activity_body(customerKey=KEY)),
    "identifier": (
        "POST",
        "/activity",
        activity_body(identifiers=[{**identifier(), "type": "email"}]),
    ),
    "property": (
        "POST",
        "/activity",
        activity_body(properties=[{"name": "n", "value": "v", "scope": "x"}]),
    ),
    "device": ("POST", "/activity", activity_body(device={**_DEVICE, "battery": 0.5})),
    "activity": ("POST", "/activity", activity_body(activities=[{**_ACT, "weight": "1"}])),
    "structure body": ("POST", "/structure", {**structure_body("activitySummary"), "x": 1}),
    "delete body": ("DELETE", "", {"identifier": identifier(), "reason": "gdpr"}),
    "delete identifier": ("DELETE", "", {"identifier": {**identifier(), "x": "y"}}),
}


@pytest.mark.parametrize("where", sorted(UNKNOWN_MEMBERS))
async def test_unknown_member_is_bad_request(
    wire: Wire, mxo_emulator: Emulator, where: str
) -> None:
    """An unknown member anywhere in a request body is a 400 GENERAL, and nothing is applied."""
    method, path, body = UNKNOWN_MEMBERS[where]
    mxo_emulator.add_customer(KEY)
    status, _, raw = await wire.call(method, path, body)
    assert 400 == status
    assert "GENERAL" == orjson.loads(raw)["errorCode"]
    assert 0 == mxo_emulator.counters.applied_activities
    assert 0 == mxo_emulator.counters.deletes_applied


# --- send activity --------------------------------------------------------------------------


async def test_activity_answers_tid_and_no_errors(wire: Wire) -> None:
    """A valid activity request is answered 200 {"tid", "errors": []} with a lower-case hex TID."""
    status, data = await wire.activity(activity_body())
    assert 200 == status
    assert {"tid": data["tid"], "errors": []} == data
    assert TID.fullmatch(str(data["tid"]))


async def test_same_customer_key_keeps_its_tid(wire: Wire) -> None:
    """Two requests for the same customer key are answered with the same TID."""
    _, first = await wire.activity(activity_body())
    _, second = await wire.activity(activity_body())
    assert first["tid"] == second["tid"]


async def test_unknown_tid_alone_becomes_a_new_customer(wire: Wire, mxo_emulator: Emulator) -> None:
    """An activity for an unknown TID alone (customerContext.tid) creates a customer with it."""
    _, data = await wire.activity(activity_body(key=None, tid=OTHER_TID))
    stored = mxo_emulator.customer(tid=OTHER_TID)
    assert OTHER_TID == data["tid"]
    assert stored is not None
    assert (OTHER_TID,) == stored.tids
    assert stored.key is None


async def test_key_and_unknown_tid_are_linked(wire: Wire, mxo_emulator: Emulator) -> None:
    """A known key sent with an unknown TID gains that TID as a second one."""
    _, first = await wire.activity(activity_body())
    _, second = await wire.activity(activity_body(tid=OTHER_TID))
    stored = mxo_emulator.customer(KEY)
    assert OTHER_TID == second["tid"]
    assert stored is not None
    assert (first["tid"], OTHER_TID) == stored.tids


async def test_identifiers_of_one_request_name_one_customer(
    wire: Wire, mxo_emulator: Emulator
) -> None:
    """Identifiers sent together are linked: a later request by the email alone finds the customer."""
    both = [identifier(), identifier(EMAIL, "email")]
    _, first = await wire.activity(activity_body(identifiers=both))
    _, second = await wire.activity(activity_body(identifiers=[identifier(EMAIL, "email")]))
    stored = mxo_emulator.customer(KEY)
    assert first["tid"] == second["tid"]
    assert stored is not None
    assert {"customerkey": KEY, "email": EMAIL} == stored.identifiers


@configured(key_attribute="email")
async def test_key_attribute_is_configurable(tenant: tuple[Wire, Emulator]) -> None:
    """With key_attribute='email', the email identifier is the customer key."""
    wire, emu = tenant
    await wire.activity(activity_body(identifiers=[identifier(EMAIL, "email")]))
    stored = emu.customer(EMAIL)
    assert stored is not None
    assert EMAIL == stored.key
    assert [EMAIL] == [a["customerKey"] for a in emu.applied_activities()]


@configured(key_attribute="email")
async def test_customerkey_is_an_ordinary_identifier_under_another_key_attribute(
    tenant: tuple[Wire, Emulator],
) -> None:
    """With key_attribute='email', a customerkey identifier links but is not the key."""
    wire, emu = tenant
    await wire.activity(activity_body())
    stored = emu.customer(identifiers={"customerkey": KEY})
    assert stored is not None
    assert stored.key is None
    assert emu.customer(KEY) is None


async def test_device_with_every_member_is_accepted(wire: Wire) -> None:
    """A device with all fourteen members of the spec is accepted."""
    device = {
        **_DEVICE,
        "appVer": "1.0.2",
        "devMfr": "Apple",
        "devModel": "iPhone8",
        "osVer": "10.3.3",
        "locLatitude": 61.4,
        "locLongitude": 32,
        "locLastUpdated": "2017-08-24T19:57:34.479-04:00",
        "locHorzAccuracy": 1.0,
        "ipAddress": "127.0.0.1",
        "locale": "en-US",
        "pushToken": "3220f35e-6255-3701-92a6-d401448e0145",
    }
    assert 200 == (await wire.activity(activity_body(device=device)))[0]


async def test_applied_activity_is_stored_in_wire_form(wire: Wire, mxo_emulator: Emulator) -> None:
    """A stored activity keeps its wire fields plus tid, customerKey and touchpoint."""
    sent = {
        "propositionCode": "atm",
        "dynamicPropositionCode": "atm-12345",
        "activityTypeCode": "balance_inquiry",
        "timestamp": "2018-06-02T23:06:19.250Z",
    }
    _, data = await wire.activity(activity_body(activities=[sent]))
    expected = {**sent, "tid": data["tid"], "customerKey": KEY, "touchpoint": "atm://atm"}
    assert [expected] == mxo_emulator.applied_activities()


async def test_offset_timestamp_is_accepted_as_sent(wire: Wire, mxo_emulator: Emulator) -> None:
    """An RFC 3339 timestamp with a numeric offset is a date-time too, stored as sent."""
    sent = {**_ACT, "timestamp": "2018-06-02T19:06:19-04:00"}
    status, _ = await wire.activity(activity_body(activities=[sent]))
    stored = [a["timestamp"] for a in mxo_emulator.applied_activities()]
    assert 200 == status
    assert ["2018-06-02T19:06:19-04:00"] == stored


async def test_missing_timestamp_becomes_server_time(tenant: tuple[Wire, Emulator]) -> None:
    """An activity without a timestamp is stored with the server's time in RFC 3339 Z form."""
    wire, emu = tenant
    await wire.activity(activity_body())
    assert ["2024-05-01T12:00:00Z"] == [a["timestamp"] for a in emu.applied_activities()]


async def test_limits_are_inclusive(wire: Wire, mxo_emulator: Emulator) -> None:
    """100 activities and a 255-character dynamicPropositionCode are accepted."""
    activity = {
        "propositionCode": "p",
        "activityTypeCode": "t",
        "dynamicPropositionCode": "d" * 255,
    }
    status, _ = await wire.activity(activity_body(activities=[activity] * 100))
    assert 200 == status
    assert 100 == mxo_emulator.counters.applied_activities


async def test_concurrent_activities_are_each_applied_once(
    wire: Wire, mxo_emulator: Emulator
) -> None:
    """Concurrent requests with unique codes are all stored, none twice."""
    codes = [f"code-{i}" for i in range(50)]

    async def send(code: str) -> int:
        activity = {"propositionCode": "p", "activityTypeCode": "t", "dynamicPropositionCode": code}
        return (await wire.activity(activity_body(key=code, activities=[activity])))[0]

    await wire.fetch_token()
    statuses = await asyncio.gather(*(send(code) for code in codes))
    stored = [a["dynamicPropositionCode"] for a in mxo_emulator.applied_activities()]
    assert [200] * 50 == statuses
    assert sorted(codes) == sorted(str(c) for c in stored)


# --- future timestamps ----------------------------------------------------------------------


def _stamp(seconds_ahead: float) -> dict[str, str]:
    moment = NOW + timedelta(seconds=seconds_ahead)
    return {**_ACT, "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}


async def test_future_timestamp_is_invalid_date_time(tenant: tuple[Wire, Emulator]) -> None:
    """A timestamp a minute ahead of the server's clock is a 400 INVALID_DATE_TIME, not stored."""
    wire, emu = tenant
    status, data = await wire.activity(activity_body(activities=[_ACT, _stamp(60)]))
    assert 400 == status
    assert "INVALID_DATE_TIME" == data["errorCode"]
    assert ERROR_KEYS == sorted(data)
    assert 0 == emu.counters.applied_activities


async def test_timestamp_within_the_clock_skew_is_accepted(tenant: tuple[Wire, Emulator]) -> None:
    """A timestamp up to clock_skew (default 5 s) ahead of the server's clock is accepted."""
    wire, _ = tenant
    assert 200 == (await wire.activity(activity_body(activities=[_stamp(5)])))[0]


@configured(clock_skew=0)
async def test_clock_skew_zero_refuses_any_future_second(tenant: tuple[Wire, Emulator]) -> None:
    """With clock_skew=0 a timestamp one second ahead is refused."""
    wire, _ = tenant
    status, data = await wire.activity(activity_body(activities=[_stamp(1)]))
    assert 400 == status
    assert "INVALID_DATE_TIME" == data["errorCode"]


# --- catalogue and rejected activities ------------------------------------------------------

KNOWN = Catalogue(propositions={"atm"}, activity_types={"view", "balance"})
UNKNOWN_PROPOSITION = {
    "propositionCode": "nope",
    "dynamicPropositionCode": "nope-1",
    "activityTypeCode": "view",
    "timestamp": "2018-06-02T23:06:19.250Z",
}
UNKNOWN_TYPE = {"propositionCode": "atm", "activityTypeCode": "zap"}


@configured(catalogue=KNOWN)
async def test_unknown_proposition_is_listed_and_echoed(tenant: tuple[Wire, Emulator]) -> None:
    """An unknown proposition code comes back in errors, echoed as sent, with INVALID_PROPOSITION_CODE."""
    wire, _ = tenant
    status, data = await wire.activity(activity_body(activities=[_ACT, UNKNOWN_PROPOSITION]))
    errors = data["errors"]
    assert 200 == status
    assert [("INVALID_PROPOSITION_CODE", UNKNOWN_PROPOSITION)] == [
        (e["errorCode"], e["activity"]) for e in errors
    ]
    assert ["errorCode", "errorMessage", "activity"] == list(errors[0])
    assert errors[0]["errorMessage"]


@configured(catalogue=KNOWN)
async def test_unknown_activity_type_is_listed(tenant: tuple[Wire, Emulator]) -> None:
    """An unknown activity type code comes back in errors with INVALID_ACTIVITY_TYPE_CODE."""
    wire, _ = tenant
    _, data = await wire.activity(activity_body(activities=[UNKNOWN_TYPE]))
    assert [("INVALID_ACTIVITY_TYPE_CODE", UNKNOWN_TYPE)] == [
        (e["errorCode"], e["activity"]) for e in data["errors"]
    ]


@configured(catalogue=KNOWN)
async def test_rejected_activities_are_not_stored(tenant: tuple[Wire, Emulator]) -> None:
    """Only the known activities of a request are stored; the counters count both kinds."""
    wire, emu = tenant
    await wire.activity(activity_body(activities=[UNKNOWN_TYPE, _ACT, UNKNOWN_PROPOSITION]))
    counters = emu.counters
    assert ["atm/balance"] == [
        f"{a['propositionCode']}/{a['activityTypeCode']}" for a in emu.applied_activities()
    ]
    assert 1 == counters.applied_activities
    assert 2 == counters.rejected_activities
    assert 1 == counters.activity_requests_applied


@configured(catalogue=KNOWN)
async def test_all_rejected_still_answers_the_tid(tenant: tuple[Wire, Emulator]) -> None:
    """A request whose every activity is rejected is still a 200 naming the customer's TID."""
    wire, emu = tenant
    status, data = await wire.activity(activity_body(activities=[UNKNOWN_TYPE]))
    stored = emu.customer(KEY)
    assert 200 == status
    assert stored is not None
    assert stored.tids[0] == data["tid"]
    assert 1 == len(data["errors"])


@configured(catalogue=Catalogue(identifier_attributes={"email"}))
async def test_unknown_identifier_attribute_is_invalid_api_name(
    tenant: tuple[Wire, Emulator],
) -> None:
    """With known identifier attributes configured, another apiName is a 400 INVALID_API_NAME."""
    wire, emu = tenant
    body = activity_body(identifiers=[identifier(), identifier("c-1", "crmId")])
    status, data = await wire.activity(body)
    assert 400 == status
    assert "INVALID_API_NAME" == data["errorCode"]
    assert 0 == emu.counters.applied_activities


@configured(faults=Faults(reject=1.0))
async def test_reject_fault_rejects_with_general(tenant: tuple[Wire, Emulator]) -> None:
    """reject=1 lists every activity in errors with errorCode GENERAL and stores none."""
    wire, emu = tenant
    status, data = await wire.activity(activity_body(activities=[_ACT, UNKNOWN_TYPE]))
    assert 200 == status
    assert [("GENERAL", _ACT), ("GENERAL", UNKNOWN_TYPE)] == [
        (e["errorCode"], e["activity"]) for e in data["errors"]
    ]
    assert [] == emu.applied_activities()


@configured(faults=Faults(reject=1.0))
async def test_reject_fault_is_counted(tenant: tuple[Wire, Emulator]) -> None:
    """Injected rejections count in faults_injected['reject'] and in rejected_activities."""
    wire, emu = tenant
    await wire.activity(activity_body(activities=[_ACT, _ACT, _ACT]))
    assert {"reject": 3} == emu.counters.faults_injected
    assert 3 == emu.counters.rejected_activities


@configured(faults=Faults(reject=0.5), seed=11)
async def test_reject_fault_splits_a_request(tenant: tuple[Wire, Emulator]) -> None:
    """With reject=0.5 each activity is either stored or listed in errors, never both."""
    wire, emu = tenant
    sent = [{**_ACT, "dynamicPropositionCode": f"d{i}"} for i in range(20)]
    _, data = await wire.activity(activity_body(activities=sent))
    rejected = [e["activity"]["dynamicPropositionCode"] for e in data["errors"]]
    stored = [a["dynamicPropositionCode"] for a in emu.applied_activities()]
    assert sorted(a["dynamicPropositionCode"] for a in sent) == sorted(rejected + stored)
    assert 0 < len(rejected) < 20


# --- structures -----------------------------------------------------------------------------


async def test_activity_summary_is_an_envelope(wire: Wire) -> None:
    """activitySummary answers {structureApiName, tid, structure} with counts and the latest time."""
    activities = [
        {
            "propositionCode": "atm",
            "activityTypeCode": "balance",
            "timestamp": "2018-06-02T23:06:19Z",
        },
        {
            "propositionCode": "atm",
            "activityTypeCode": "balance",
            "timestamp": "2018-06-02T23:06:19.5Z",
        },
        {
            "propositionCode": "web",
            "activityTypeCode": "login",
            "timestamp": "2017-01-01T00:00:00Z",
        },
    ]
    _, sent = await wire.activity(activity_body(activities=activities))
    status, data = await wire.structure(structure_body("activitySummary"))
    expected = {
        "structureApiName": "activitySummary",
        "tid": sent["tid"],
        "structure": {
            "activityCount": 3,
            "propositions": {"atm": {"balance": 2}, "web": {"login": 1}},
            "lastActivityTime": "2018-06-02T23:06:19.500Z",
        },
    }
    assert 200 == status
    assert expected == data


async def test_customer_profile_offers_renewal_when_due(wire: Wire) -> None:
    """customerProfile includes the renew10 offer when the context says renewalDue=true."""
    _, data = await wire.structure(structure_body("customerProfile", renewalDue="true"))
    assert ["renew10"] == [offer["code"] for offer in data["structure"]["offers"]]


async def test_customer_profile_has_no_offer_without_context(wire: Wire) -> None:
    """customerProfile for a new customer without properties is bronze with no offers."""
    _, data = await wire.structure(structure_body("customerProfile"))
    assert {"tier": "bronze", "activityCount": 0, "offers": []} == data["structure"]


async def test_customer_profile_shows_seeded_attributes(wire: Wire, mxo_emulator: Emulator) -> None:
    """Attributes seeded with add_customer appear in customerProfile; a seeded tier wins."""
    mxo_emulator.add_customer(KEY, attributes={"tier": "gold", "name": "Alice"})
    _, data = await wire.structure(structure_body("customerProfile"))
    profile = data["structure"]
    assert "gold" == profile["tier"]
    assert "Alice" == profile["name"]
    assert ["lounge"] == [offer["code"] for offer in profile["offers"]]


async def test_structure_for_unknown_customer_creates_nothing(
    wire: Wire, mxo_emulator: Emulator
) -> None:
    """For an unknown key the envelope has no tid, the structure is over empty data, nothing is stored."""
    status, data = await wire.structure(structure_body("activitySummary", key="nobody"))
    expected = {
        "structureApiName": "activitySummary",
        "structure": {"activityCount": 0, "propositions": {}, "lastActivityTime": None},
    }
    assert 200 == status
    assert expected == data
    assert mxo_emulator.customer("nobody") is None


async def test_structure_by_a_second_tid_answers_that_tid(
    wire: Wire, mxo_emulator: Emulator
) -> None:
    """A structure read by one of a customer's TIDs names that TID in the envelope."""
    await wire.activity(activity_body())
    await wire.activity(activity_body(tid=OTHER_TID))
    body = structure_body("activitySummary", key=None)
    body["customerContext"]["tid"] = OTHER_TID
    _, data = await wire.structure(body)
    assert OTHER_TID == data["tid"]
    assert 2 == data["structure"]["activityCount"]


async def test_unknown_structure_is_not_found(wire: Wire) -> None:
    """An unpublished structure name gets 404 {errorCode, errorMessage, structureApiName}."""
    status, data = await wire.structure(structure_body("noSuchStructure"))
    assert 404 == status
    assert "INVALID_API_NAME" == data["errorCode"]
    assert "noSuchStructure" == data["structureApiName"]
    assert 3 == len(data)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("customer Profile", "INVALID_API_NAME"),
        ("", "INVALID_API_NAME"),
        (None, "INVALID_API_NAME"),
    ],
)
async def test_bad_structure_name_is_bad_request(wire: Wire, name: str | None, code: str) -> None:
    """A structureApiName with spaces, empty or not a string gets 400 INVALID_API_NAME."""
    body = structure_body("x")
    body["structureApiName"] = name
    status, data = await wire.structure(body)
    assert 400 == status
    assert code == data["errorCode"]


async def test_missing_structure_name_is_bad_request(wire: Wire) -> None:
    """A structure body without structureApiName gets 400 GENERAL."""
    body = structure_body("x")
    del body["structureApiName"]
    status, data = await wire.structure(body)
    assert 400 == status
    assert "GENERAL" == data["errorCode"]


# --- delete ---------------------------------------------------------------------------------


async def test_delete_lists_tids_and_identifiers(wire: Wire) -> None:
    """Deleting a customer by identifier answers 200 with all its TIDs and identifiers."""
    _, sent = await wire.activity(activity_body())
    status, data = await wire.delete({"identifier": identifier()})
    expected = {"tids": [sent["tid"]], "identifiers": [identifier()]}
    assert 200 == status
    assert expected == data


async def test_delete_lists_every_linked_identifier_and_tid(wire: Wire) -> None:
    """A customer known by two identifiers and two TIDs is deleted whole, and all are listed."""
    _, sent = await wire.activity(
        activity_body(identifiers=[identifier(), identifier(EMAIL, "email")])
    )
    await wire.activity(activity_body(tid=OTHER_TID))
    _, data = await wire.delete({"identifier": identifier(EMAIL, "email")})
    expected = {
        "tids": [sent["tid"], OTHER_TID],
        "identifiers": [identifier(), identifier(EMAIL, "email")],
    }
    assert expected == data


async def test_second_delete_is_customer_not_found(wire: Wire) -> None:
    """Deleting the same customer twice answers 404 CUSTOMER_NOT_FOUND the second time."""
    await wire.activity(activity_body())
    await wire.delete({"identifier": identifier()})
    status, data = await wire.delete({"identifier": identifier()})
    assert 404 == status
    assert "CUSTOMER_NOT_FOUND" == data["errorCode"]
    assert ERROR_KEYS == sorted(data)


async def test_delete_by_tid_removes_the_customer(wire: Wire, mxo_emulator: Emulator) -> None:
    """A delete by TID removes the record, its identifiers and its activities."""
    _, sent = await wire.activity(activity_body())
    status, _ = await wire.delete({"tid": sent["tid"]})
    assert 200 == status
    assert mxo_emulator.customer(KEY) is None
    assert [] == mxo_emulator.applied_activities()


BAD_DELETE_BODIES: dict[str, object] = {
    "empty object": {},
    "tid and identifier": {"tid": OTHER_TID, "identifier": identifier()},
    "identifier without value": {"identifier": {"apiName": "customerkey"}},
    "tid not UUID-shaped": {"tid": "t-1"},
    "list": [{"tid": OTHER_TID}],
}


@pytest.mark.parametrize("case", sorted(BAD_DELETE_BODIES))
async def test_bad_delete_body_is_bad_request(
    wire: Wire, mxo_emulator: Emulator, case: str
) -> None:
    """A delete body that does not name exactly one customer is a 400, and nothing is deleted."""
    mxo_emulator.add_customer(KEY, tid=OTHER_TID)
    status, data = await wire.delete(BAD_DELETE_BODIES[case])
    assert 400 == status
    assert ERROR_KEYS == sorted(data)
    assert 0 == mxo_emulator.counters.deletes_applied


async def test_delete_without_body_is_bad_request(wire: Wire) -> None:
    """A DELETE without a JSON body is a 400 (the spec's DELETE carries one)."""
    status, _, raw = await wire.call("DELETE", "")
    assert 400 == status
    assert "GENERAL" == orjson.loads(raw)["errorCode"]


@configured(delete_permission=False)
async def test_delete_without_permission_is_forbidden(tenant: tuple[Wire, Emulator]) -> None:
    """Credentials without delete permission get 403 GENERAL, and the customer stays."""
    wire, emu = tenant
    tid = emu.add_customer(KEY)
    status, data = await wire.delete({"identifier": identifier()})
    stored = emu.customer(KEY)
    assert 403 == status
    assert "GENERAL" == data["errorCode"]
    assert ERROR_KEYS == sorted(data)
    assert stored is not None
    assert (tid,) == stored.tids


# --- validation -----------------------------------------------------------------------------

BAD_ACTIVITY_BODIES: dict[str, tuple[object, str]] = {
    "not an object": ([1, 2], "GENERAL"),
    "missing customerContext": ({"activities": [_ACT]}, "GENERAL"),
    "missing baseTouchpointUri": (
        {"customerContext": {"identifiers": [identifier()]}, "activities": [_ACT]},
        "GENERAL",
    ),
    "neither identifiers nor tid": (activity_body(key=None), "GENERAL"),
    "empty identifiers and no tid": (activity_body(key=None, identifiers=[]), "GENERAL"),
    "empty identifier value": (activity_body(identifiers=[identifier("")]), "GENERAL"),
    "apiName with a space": (
        activity_body(identifiers=[identifier(KEY, "customer key")]),
        "INVALID_API_NAME",
    ),
    "tid not UUID-shaped": (activity_body(tid="t-1"), "GENERAL"),
    "empty activities": (activity_body(activities=[]), "GENERAL"),
    "101 activities": (activity_body(activities=[_ACT] * 101), "GENERAL"),
    "missing propositionCode": (activity_body(activities=[{"activityTypeCode": "b"}]), "GENERAL"),
    "missing activityTypeCode": (activity_body(activities=[{"propositionCode": "atm"}]), "GENERAL"),
    "long dynamicPropositionCode": (
        activity_body(activities=[{**_ACT, "dynamicPropositionCode": "d" * 256}]),
        "GENERAL",
    ),
    "timestamp with a space": (
        activity_body(activities=[{**_ACT, "timestamp": "2018-06-02 23:06:19Z"}]),
        "INVALID_DATE_TIME",
    ),
    "timestamp without an offset": (
        activity_body(activities=[{**_ACT, "timestamp": "2018-06-02T23:06:19"}]),
        "INVALID_DATE_TIME",
    ),
    "impossible date": (
        activity_body(activities=[{**_ACT, "timestamp": "2018-02-30T23:06:19Z"}]),
        "INVALID_DATE_TIME",
    ),
    "property value not a string": (
        activity_body(properties=[{"name": "n", "value": 1}]),
        "GENERAL",
    ),
    "device without appName": (
        activity_body(device={"devType": "PDA", "osName": "IOS"}),
        "GENERAL",
    ),
    "devType not in the enum": (
        activity_body(device={**_DEVICE, "devType": "PHONE"}),
        "GENERAL",
    ),
    "osName not in the enum": (activity_body(device={**_DEVICE, "osName": "ios"}), "GENERAL"),
    "locLatitude a string": (activity_body(device={**_DEVICE, "locLatitude": "61.4"}), "GENERAL"),
}


@pytest.mark.parametrize("case", sorted(BAD_ACTIVITY_BODIES))
async def test_invalid_activity_is_bad_request_and_not_applied(
    wire: Wire, mxo_emulator: Emulator, case: str
) -> None:
    """Each invalid activity body gets 400 {errorCode, errorMessage} and applies nothing."""
    body, code = BAD_ACTIVITY_BODIES[case]
    status, data = await wire.activity(body)
    assert 400 == status
    assert code == data["errorCode"]
    assert ERROR_KEYS == sorted(data)
    assert 0 == mxo_emulator.counters.applied_activities


async def test_malformed_json_is_bad_request(wire: Wire) -> None:
    """A body that is not JSON gets 400 GENERAL."""
    status, _, raw = await wire.call("POST", "/activity", raw=b'{"customerContext": ')
    expected = {"errorCode": "GENERAL", "errorMessage": "request body is not valid JSON"}
    assert 400 == status
    assert expected == orjson.loads(raw)


# --- fault injection ------------------------------------------------------------------------


@pytest.fixture
async def faulty(http: aiohttp.ClientSession) -> AsyncIterator[tuple[Wire, Emulator]]:
    async with Emulator(EmulatorConfig()) as emu:
        yield Wire(http, emu), emu


STATUS_FAULTS = {
    "status_429": (429, "0.05"),
    "status_429_bare": (429, None),
    "status_500": (500, None),
    "status_502": (502, None),
    "status_503": (503, "0.05"),
    "status_504": (504, None),
}


@pytest.mark.parametrize("kind", sorted(STATUS_FAULTS))
async def test_status_fault_answers_without_applying(
    faulty: tuple[Wire, Emulator], kind: str
) -> None:
    """Each injected status fault answers its status (Retry-After where due) and applies nothing."""
    wire, emu = faulty
    await wire.fetch_token()
    emu.faults = Faults(**{kind: 1.0}, retry_after=0.05)
    status, headers, raw = await wire.call("POST", "/activity", activity_body())
    expected_status, expected_retry_after = STATUS_FAULTS[kind]
    assert expected_status == status
    assert expected_retry_after == headers.get("Retry-After")
    assert "GENERAL" == orjson.loads(raw)["errorCode"]
    assert {kind: 1} == emu.counters.faults_injected
    assert 0 == emu.counters.applied_activities


async def test_html_error_fault_sends_a_non_json_body(faulty: tuple[Wire, Emulator]) -> None:
    """The html_error fault answers 502 with an HTML body."""
    wire, emu = faulty
    emu.faults = Faults(html_error=1.0)
    status, headers, raw = await wire.call("POST", "/activity", activity_body())
    assert 502 == status
    assert "text/html" == headers["Content-Type"].split(";")[0]
    assert raw.startswith(b"<html>")


async def test_reset_before_drops_the_connection_without_applying(
    faulty: tuple[Wire, Emulator],
) -> None:
    """reset_before closes the connection with no response and stores nothing."""
    wire, emu = faulty
    await wire.fetch_token()
    emu.faults = Faults(reset_before=1.0)
    with pytest.raises(aiohttp.ClientConnectionError):
        await wire.call("POST", "/activity", activity_body())
    assert 0 == emu.counters.applied_activities
    assert {} == emu.counters.status_counts


async def test_reset_after_applies_then_drops_the_connection(
    faulty: tuple[Wire, Emulator],
) -> None:
    """reset_after stores the activity, then closes the connection with no response."""
    wire, emu = faulty
    await wire.fetch_token()
    emu.faults = Faults(reset_after=1.0)
    with pytest.raises(aiohttp.ClientConnectionError):
        await wire.call("POST", "/activity", activity_body())
    assert 1 == emu.counters.applied_activities
    assert {"reset_after": 1} == emu.counters.faults_injected


async def test_connection_is_usable_after_a_reset(faulty: tuple[Wire, Emulator]) -> None:
    """After a reset the next request on the same session succeeds."""
    wire, emu = faulty
    await wire.fetch_token()
    emu.faults = Faults(reset_before=1.0)
    with pytest.raises(aiohttp.ClientConnectionError):
        await wire.call("POST", "/activity", activity_body())
    emu.faults = Faults()
    assert (await wire.activity(activity_body()))[0] == 200


async def test_malformed_json_fault_applies_and_garbles_the_body(
    faulty: tuple[Wire, Emulator],
) -> None:
    """malformed_json stores the activity and answers 200 with a body that is not JSON."""
    wire, emu = faulty
    emu.faults = Faults(malformed_json=1.0)
    status, _, raw = await wire.call("POST", "/activity", activity_body())
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    assert 200 == status
    assert 1 == emu.counters.applied_activities


async def test_oversized_fault_pads_a_valid_body(faulty: tuple[Wire, Emulator]) -> None:
    """oversized answers 200 with valid JSON of oversized_bytes bytes."""
    wire, emu = faulty
    emu.faults = Faults(oversized=1.0, oversized_bytes=100_000)
    status, _, raw = await wire.call("POST", "/activity", activity_body())
    assert 200 == status
    assert 100_000 == len(raw)
    assert [] == orjson.loads(raw)["errors"]


async def test_slow_body_fault_delivers_the_whole_body(faulty: tuple[Wire, Emulator]) -> None:
    """slow_body sends the complete answer in chunks."""
    wire, emu = faulty
    emu.faults = Faults(slow_body=1.0, slow_body_chunks=3, slow_body_delay=0.01)
    status, _, raw = await wire.call("POST", "/activity", activity_body())
    assert 200 == status
    assert [] == orjson.loads(raw)["errors"]
    assert {"slow_body": 1} == emu.counters.faults_injected


async def test_latency_fault_delays_the_answer(faulty: tuple[Wire, Emulator]) -> None:
    """With latency configured, no answer arrives before the latency has passed."""
    wire, emu = faulty
    await wire.fetch_token()
    emu.faults = Faults(latency=0.3)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(wire.call("POST", "/activity", activity_body()), 0.05)


async def test_request_abandoned_during_latency_is_still_applied(
    faulty: tuple[Wire, Emulator],
) -> None:
    """A request that fully arrived is handled even when its client gives up during latency."""
    wire, emu = faulty
    emu.add_customer(KEY)
    await wire.fetch_token()
    emu.faults = Faults(latency=0.2)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(wire.call("DELETE", "", {"identifier": identifier()}), 0.05)
    for _ in range(200):  # the handler finishes after its latency; poll, do not guess a delay
        if emu.counters.deletes_applied:
            break
        await asyncio.sleep(0.01)
    assert 1 == emu.counters.deletes_applied
    assert emu.customer(KEY) is None


async def test_max_rate_answers_429_without_retry_after(http: aiohttp.ClientSession) -> None:
    """Above max_rate in a one-second window the answer is 429 without Retry-After."""
    async with Emulator(EmulatorConfig(faults=Faults(max_rate=2)), clock=FakeClock()) as emu:
        wire = Wire(http, emu)
        statuses = [(await wire.call("POST", "/activity", activity_body()))[0] for _ in range(2)]
        status, headers, _ = await wire.call("POST", "/activity", activity_body())
    assert [200, 200] == statuses
    assert 429 == status
    assert headers.get("Retry-After") is None


async def test_max_rate_window_slides(http: aiohttp.ClientSession) -> None:
    """Once a second has passed, requests above the cap are admitted again."""
    clock = FakeClock()
    async with Emulator(EmulatorConfig(faults=Faults(max_rate=1)), clock=clock) as emu:
        wire = Wire(http, emu)
        statuses = [(await wire.activity(activity_body()))[0] for _ in range(2)]
        clock.now += 1.0
        statuses.append((await wire.activity(activity_body()))[0])
    assert statuses == [200, 429, 200]


@pytest.mark.parametrize(
    ("kind", "status"), [("token_429", 429), ("token_500", 500), ("token_503", 503)]
)
async def test_token_endpoint_faults(faulty: tuple[Wire, Emulator], kind: str, status: int) -> None:
    """Token-endpoint faults answer their status and issue no token."""
    wire, emu = faulty
    emu.faults = Faults(**{kind: 1.0})
    assert status == (await wire.fetch_token())[0]
    assert 0 == emu.counters.tokens_issued


async def test_token_reset_drops_the_connection(faulty: tuple[Wire, Emulator]) -> None:
    """token_reset closes the token request's connection without an answer."""
    wire, emu = faulty
    emu.faults = Faults(token_reset=1.0)
    with pytest.raises(aiohttp.ClientConnectionError):
        await wire.fetch_token()


async def test_faults_apply_to_structure_and_delete(faulty: tuple[Wire, Emulator]) -> None:
    """Injected faults hit every API endpoint, not only activities."""
    wire, emu = faulty
    await wire.fetch_token()
    emu.faults = Faults(status_500=1.0)
    statuses = (
        (await wire.structure(structure_body("customerProfile")))[0],
        (await wire.delete({"identifier": identifier()}))[0],
    )
    assert statuses == (500, 500)


async def test_seeded_faults_repeat(http: aiohttp.ClientSession) -> None:
    """Two emulators with the same seed inject the same faults in the same order."""
    runs = []
    for _ in range(2):
        config = EmulatorConfig(seed=7, faults=Faults(status_500=0.5))
        async with Emulator(config) as emu:
            wire = Wire(http, emu)
            runs.append([(await wire.activity(activity_body()))[0] for _ in range(12)])
    assert runs[0] == runs[1]
    assert {200, 500} == set(runs[0])


async def test_seeded_tids_repeat(http: aiohttp.ClientSession) -> None:
    """Two emulators with the same seed hand out the same TIDs."""
    tids = []
    for _ in range(2):
        async with Emulator(EmulatorConfig(seed=3)) as emu:
            tids.append((await Wire(http, emu).activity(activity_body()))[1]["tid"])
    assert tids[0] == tids[1]


# --- counters -------------------------------------------------------------------------------


async def test_counters_count_received_applied_and_statuses(
    wire: Wire, mxo_emulator: Emulator
) -> None:
    """Counters record token requests, requests per endpoint, applied work and statuses."""
    await wire.activity(activity_body(activities=[_ACT, _ACT]))
    await wire.activity(activity_body(activities=[]))
    await wire.structure(structure_body("activitySummary"))
    await wire.delete({"identifier": identifier()})
    await wire.delete({"identifier": identifier()})
    c = mxo_emulator.counters
    assert 1 == c.token_requests
    assert 5 == c.requests
    assert 2 == c.activity_requests
    assert 1 == c.structure_requests
    assert 2 == c.delete_requests
    assert 2 == c.applied_activities
    assert 1 == c.activity_requests_applied
    assert 1 == c.structures_served
    assert 1 == c.deletes_applied
    assert c.status_counts == {200: 3, 400: 1, 404: 1}


# --- command line and pytest plugin ---------------------------------------------------------


async def test_command_line_serves_until_terminated(http: aiohttp.ClientSession) -> None:
    """python -m mxo_async.emulator prints its URL, serves tokens and exits 0 on SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "mxo_async.emulator", "--port", "0", "--client-id", "cli", "--token-ttl", "60"),
        *("--client-secret", "cli-secret", "--faults", "429=0.5", "--seed", "1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert match is not None
    headers = {"Authorization": basic("cli", "cli-secret")}
    async with http.post(
        match.group() + "/one/oauth2token", data=b"grant_type=client_credentials", headers=headers
    ) as resp:
        status, expires_in = resp.status, (await resp.json())["expires_in"]
    proc.terminate()
    await proc.communicate()
    assert 200 == status
    assert 60 == expires_in
    assert 0 == proc.returncode
    assert "cli-secret" not in line


async def test_command_line_rejects_a_bad_fault_spec() -> None:
    """A malformed --faults spec is a usage error (exit status 2)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "mxo_async.emulator", "--faults", "teapot=1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert 2 == proc.returncode
    assert b"--faults" in err


async def test_mxo_client_fixture_talks_to_mxo_emulator(
    mxo_client: MXOClient, mxo_emulator: Emulator
) -> None:
    """The mxo_client fixture sends to the mxo_emulator fixture's tenant."""
    result = await mxo_client.send_activity(
        Customer.by_key(KEY), "atm://atm", [Activity("atm", "balance", dynamic_proposition="d-1")]
    )
    stored = [(a["tid"], a["dynamicPropositionCode"]) for a in mxo_emulator.applied_activities()]
    assert stored == [(result.tid, "d-1")]


PLUGIN_USER_TESTS = """
import pytest
from mxo_async import Activity, Customer
from mxo_async.emulator import EmulatorConfig


@pytest.fixture
def mxo_emulator_config():
    return EmulatorConfig(site_key="ONE-USERUSER01-0002")


@pytest.mark.asyncio
async def test_client(mxo_client, mxo_emulator):
    result = await mxo_client.send_activity(Customer.by_key("k"), "web://x", [Activity("p", "t")])
    assert mxo_emulator.customer("k").tids == (result.tid,)


@pytest.mark.asyncio
async def test_config_override(mxo_emulator):
    assert mxo_emulator.site_key == "ONE-USERUSER01-0002"
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_plugin_fixtures_work_in_a_users_project(pytester: pytest.Pytester, mode: str) -> None:
    """A user's tests get working fixtures from the installed plugin in strict and auto mode."""
    pytester.makepyfile(PLUGIN_USER_TESTS)
    result = pytester.runpytest_subprocess(
        *("-p", "no:cacheprovider", "-W", "error", "-o", f"asyncio_mode={mode}"),
        *("-o", "asyncio_default_fixture_loop_scope=function"),
    )
    result.assert_outcomes(passed=2)


# --- command-line options reach the configuration ---------------------------------------------


@pytest.fixture
def catalogue_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalogue.json"
    path.write_text('{"propositions": ["atm"], "activity_types": ["view"]}')
    return path


def option_cases(catalogue_file: Path) -> dict[str, tuple[list[str], EmulatorConfig]]:
    return {
        "key attribute": (["--key-attribute", "email"], EmulatorConfig(key_attribute="email")),
        "catalogue": (
            ["--catalogue", str(catalogue_file)],
            EmulatorConfig(catalogue=Catalogue(propositions={"atm"}, activity_types={"view"})),
        ),
        "no delete permission": (
            ["--no-delete-permission"],
            EmulatorConfig(delete_permission=False),
        ),
        "reject fault": (["--faults", "reject=0.1"], EmulatorConfig(faults=Faults(reject=0.1))),
    }


OPTION_CASES = ["key attribute", "catalogue", "no delete permission", "reject fault"]


@pytest.mark.parametrize("case", OPTION_CASES)
def test_module_options_reach_the_config(
    monkeypatch: pytest.MonkeyPatch, catalogue_file: Path, case: str
) -> None:
    """python -m mxo_async.emulator turns each new option into its EmulatorConfig field."""
    served: list[EmulatorConfig] = []
    monkeypatch.setattr(emulator_module, "run_emulator", lambda c, h, p: served.append(c))
    monkeypatch.delenv("MXO_EMULATOR_CLIENT_SECRET", raising=False)
    argv, expected = option_cases(catalogue_file)[case]
    emulator_module.main(argv)
    assert [expected] == served


@pytest.mark.parametrize("case", OPTION_CASES)
def test_command_options_reach_the_config(
    monkeypatch: pytest.MonkeyPatch, catalogue_file: Path, case: str
) -> None:
    """mxo-async emulator turns each new option into its EmulatorConfig field."""
    served: list[EmulatorConfig] = []
    monkeypatch.setattr(emulator_command, "run_emulator", lambda c, h, p: served.append(c))
    argv, expected = option_cases(catalogue_file)[case]
    result = CliRunner().invoke(
        emulator_command.emulator, argv, env={"MXO_EMULATOR_CLIENT_SECRET": None}
    )
    assert 0 == result.exit_code
    assert [expected] == served


@pytest.mark.parametrize("content", ["not json", '{"propositions": "atm"}'])
def test_module_rejects_a_bad_catalogue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    """A catalogue file that is not a catalogue is a usage error (exit status 2) naming --catalogue."""
    path = tmp_path / "catalogue.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as exited:
        emulator_module.main(["--catalogue", str(path)])
    assert 2 == exited.value.code
    assert "--catalogue" in capsys.readouterr().err


def test_command_rejects_a_missing_catalogue(tmp_path: Path) -> None:
    """mxo-async emulator --catalogue with a missing file is a usage error (exit status 2)."""
    result = CliRunner().invoke(
        emulator_command.emulator, ["--catalogue", str(tmp_path / "no.json")]
    )
    assert 2 == result.exit_code
    assert "--catalogue" in result.output
