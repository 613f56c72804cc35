"""The emulator answers raw HTTP exactly as WIRE.md says (driven with aiohttp, not our client)."""

from __future__ import annotations

import asyncio
import base64
import re
import sys
from collections.abc import AsyncIterator
from urllib.parse import quote_plus

import aiohttp
import orjson
import pytest

from mxo_async import Activity, Customer, MXOClient
from mxo_async.emulator import Emulator, EmulatorConfig, Faults

pytest_plugins = ["pytester"]

TID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
KEY = "alice@example.com"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def basic(client_id: str, client_secret: str) -> str:
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def activity_body(
    key: str | None = KEY, activities: list[dict[str, str]] | None = None, **context: object
) -> dict[str, object]:
    customer_context: dict[str, object] = {"baseTouchpointUri": "atm://atm", **context}
    if key is not None:
        customer_context["identifiers"] = [{"apiName": "customerkey", "value": key}]
    if activities is None:
        activities = [{"propositionCode": "atm", "activityTypeCode": "balance_inquiry"}]
    return {"customerContext": customer_context, "activities": activities}


def structure_body(name: str, key: str | None = KEY, **properties: str) -> dict[str, object]:
    context: dict[str, object] = {"baseTouchpointUri": "web://bank.com"}
    if key is not None:
        context["identifiers"] = [{"apiName": "customerkey", "value": key}]
    if properties:
        context["properties"] = [{"name": n, "value": v} for n, v in properties.items()]
    return {"customerContext": context, "structureApiName": name}


class Wire:
    """Raw HTTP against one emulator, with a token fetched once."""

    def __init__(self, http: aiohttp.ClientSession, emu: Emulator) -> None:
        self.http = http
        self.emu = emu
        self.token: str | None = None

    async def fetch_token(self) -> tuple[int, dict[str, object]]:
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
        params: dict[str, str] | None = None,
        raw: bytes | None = None,
        token: str | None = None,
        root: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        if token is None:
            if self.token is None:
                _, data = await self.fetch_token()
                self.token = str(data["access_token"])
            token = self.token
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        url = (root or self.emu.api_root()) + path
        async with self.http.request(
            method, url, data=data, params=params, headers=headers
        ) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def activity(self, body: object, **kwargs: object) -> tuple[int, dict[str, object]]:
        status, _, raw = await self.call("POST", "/activity", body, **kwargs)  # type: ignore[arg-type]
        return status, orjson.loads(raw)

    async def structure(self, body: object, **kwargs: object) -> tuple[int, dict[str, object]]:
        status, _, raw = await self.call("POST", "/structure", body, **kwargs)  # type: ignore[arg-type]
        return status, orjson.loads(raw)

    async def delete(self, **params: str) -> tuple[int, dict[str, object]]:
        status, _, raw = await self.call("DELETE", "/", params=params)
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


# --- token endpoint -------------------------------------------------------------------------


async def test_token_endpoint_issues_a_bearer_token(wire: Wire) -> None:
    """Valid Basic credentials and the client_credentials grant yield a Bearer token."""
    status, data = await wire.fetch_token()
    assert (status, data["token_type"], data["expires_in"]) == (200, "Bearer", 3600)
    assert isinstance(data["access_token"], str) and data["access_token"]


async def test_token_endpoint_rejects_a_wrong_secret(
    http: aiohttp.ClientSession, mxo_emulator: Emulator
) -> None:
    """A wrong client secret is answered 401 invalid_client."""
    headers = {"Authorization": basic(mxo_emulator.client_id, "nope")}
    async with http.post(
        mxo_emulator.token_url, data=b"grant_type=client_credentials", headers=headers
    ) as resp:
        assert (resp.status, (await resp.json())["error"]) == (401, "invalid_client")


async def test_token_endpoint_rejects_missing_credentials(
    http: aiohttp.ClientSession, mxo_emulator: Emulator
) -> None:
    """A token request without an Authorization header is answered 401 invalid_client."""
    async with http.post(mxo_emulator.token_url, data=b"grant_type=client_credentials") as resp:
        assert (resp.status, (await resp.json())["error"]) == (401, "invalid_client")


async def test_token_endpoint_rejects_other_grants(
    http: aiohttp.ClientSession, mxo_emulator: Emulator
) -> None:
    """A grant other than client_credentials is answered 400 unsupported_grant_type."""
    headers = {"Authorization": basic(mxo_emulator.client_id, mxo_emulator.client_secret)}
    async with http.post(
        mxo_emulator.token_url, data=b"grant_type=password", headers=headers
    ) as resp:
        assert (resp.status, (await resp.json())["error"]) == (400, "unsupported_grant_type")


async def test_token_endpoint_form_decodes_credentials(http: aiohttp.ClientSession) -> None:
    """Credentials are form-encoded before Basic encoding, so reserved characters survive."""
    config = EmulatorConfig(client_id="id with space", client_secret="s3:cr&t+%")
    async with Emulator(config) as emu:
        status, _ = await Wire(http, emu).fetch_token()
    assert status == 200


# --- bearer checks --------------------------------------------------------------------------


async def test_api_call_without_bearer_is_unauthorized(
    http: aiohttp.ClientSession, mxo_emulator: Emulator
) -> None:
    """An API call without a bearer token gets 401 with a statusCode body."""
    url = mxo_emulator.api_root() + "/activity"
    async with http.post(url, data=orjson.dumps(activity_body())) as resp:
        assert (resp.status, (await resp.json())["statusCode"]) == (401, 401)


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
    assert (status, data["errorMessage"]) == (401, "access token expired")


async def test_fractional_ttl_is_reported_as_is(
    http: aiohttp.ClientSession, clock_emulator: tuple[Emulator, FakeClock]
) -> None:
    """A fractional token_ttl is sent as a fractional expires_in."""
    _, data = await Wire(http, clock_emulator[0]).fetch_token()
    assert data["expires_in"] == 0.05


async def test_unknown_site_key_is_not_found(wire: Wire, mxo_emulator: Emulator) -> None:
    """An API call for another site key gets 404."""
    root = mxo_emulator.api_root().replace(mxo_emulator.site_key, "ONE-OTHEROTHER-0002")
    status, _, _ = await wire.call("POST", "/activity", activity_body(), root=root)
    assert status == 404


# --- send activity --------------------------------------------------------------------------


async def test_activity_answers_status_code_and_tid(wire: Wire) -> None:
    """A valid activity request is answered 200 with statusCode and a lower-case hex TID."""
    status, data = await wire.activity(activity_body())
    assert (status, data["statusCode"]) == (200, 200)
    assert TID.fullmatch(str(data["tid"]))


async def test_same_customer_key_keeps_its_tid(wire: Wire) -> None:
    """Two requests for the same customer key are answered with the same TID."""
    _, first = await wire.activity(activity_body())
    _, second = await wire.activity(activity_body())
    assert first["tid"] == second["tid"]


async def test_unknown_tid_alone_becomes_a_new_customer(wire: Wire, mxo_emulator: Emulator) -> None:
    """An activity for an unknown TID alone creates a customer with that TID."""
    tid = "a08b10a4-ead9-7667-9116-add167624b57"
    _, data = await wire.activity(activity_body(key=None), params={"tid": tid})
    stored = mxo_emulator.customer(tid=tid)
    assert (tid, (tid,), None) == (data["tid"], stored and stored.tids, stored and stored.key)


async def test_key_and_unknown_tid_are_linked(wire: Wire, mxo_emulator: Emulator) -> None:
    """A known key sent with an unknown TID gains that TID as a second one."""
    _, first = await wire.activity(activity_body())
    tid = "00000000-0000-1000-8000-000000000001"
    _, second = await wire.activity(activity_body(), params={"tid": tid})
    stored = mxo_emulator.customer(KEY)
    assert (tid, (first["tid"], tid)) == (second["tid"], stored and stored.tids)


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


async def test_missing_timestamp_becomes_server_time(wire: Wire, mxo_emulator: Emulator) -> None:
    """An activity without a timestamp is stored with the server's time in RFC 3339 Z form."""
    await wire.activity(activity_body())
    stamp = str(mxo_emulator.applied_activities()[0]["timestamp"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", stamp)


async def test_limits_are_inclusive(wire: Wire, mxo_emulator: Emulator) -> None:
    """100 activities and a 255-character dynamicPropositionCode are accepted."""
    activity = {
        "propositionCode": "p",
        "activityTypeCode": "t",
        "dynamicPropositionCode": "d" * 255,
    }
    status, _ = await wire.activity(activity_body(activities=[activity] * 100))
    assert (status, mxo_emulator.counters.applied_activities) == (200, 100)


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
    assert ([200] * 50, sorted(codes)) == (statuses, sorted(str(c) for c in stored))


# --- structures -----------------------------------------------------------------------------


async def test_activity_summary_counts_stored_activities(wire: Wire) -> None:
    """activitySummary counts activities per proposition and type, with the latest time."""
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
    await wire.activity(activity_body(activities=activities))
    status, data = await wire.structure(structure_body("activitySummary"))
    expected = {
        "activityCount": 3,
        "propositions": {"atm": {"balance": 2}, "web": {"login": 1}},
        "lastActivityTime": "2018-06-02T23:06:19.500Z",
    }
    assert (200, expected) == (status, data)


async def test_customer_profile_offers_renewal_when_due(wire: Wire) -> None:
    """customerProfile includes the renew10 offer when the context says renewalDue=true."""
    _, data = await wire.structure(structure_body("customerProfile", renewalDue="true"))
    assert [offer["code"] for offer in data["offers"]] == ["renew10"]  # type: ignore[attr-defined]


async def test_customer_profile_has_no_offer_without_context(wire: Wire) -> None:
    """customerProfile for a new customer without properties is bronze with no offers."""
    _, data = await wire.structure(structure_body("customerProfile"))
    assert data == {"tier": "bronze", "activityCount": 0, "offers": []}


async def test_customer_profile_shows_seeded_attributes(wire: Wire, mxo_emulator: Emulator) -> None:
    """Attributes seeded with add_customer appear in customerProfile; a seeded tier wins."""
    mxo_emulator.add_customer(KEY, attributes={"tier": "gold", "name": "Alice"})
    _, data = await wire.structure(structure_body("customerProfile"))
    assert (
        data["tier"],
        data["name"],
        [offer["code"] for offer in data["offers"]],  # type: ignore[attr-defined]
    ) == ("gold", "Alice", ["lounge"])


async def test_structure_for_unknown_customer_creates_nothing(
    wire: Wire, mxo_emulator: Emulator
) -> None:
    """Reading a structure for an unknown key answers over empty data and stores no customer."""
    status, data = await wire.structure(structure_body("activitySummary", key="nobody"))
    expected = {"activityCount": 0, "propositions": {}, "lastActivityTime": None}
    assert (200, expected, None) == (status, data, mxo_emulator.customer("nobody"))


async def test_unknown_structure_is_not_found(wire: Wire) -> None:
    """An unpublished structure name gets 404."""
    status, data = await wire.structure(structure_body("noSuchStructure"))
    assert (status, data["statusCode"]) == (404, 404)


# --- delete ---------------------------------------------------------------------------------


async def test_delete_lists_tids_and_identifiers(wire: Wire) -> None:
    """Deleting a customer answers with all its TIDs and identifiers."""
    _, sent = await wire.activity(activity_body())
    status, data = await wire.delete(customerKey=KEY)
    expected = {"tids": [sent["tid"]], "identifiers": [{"apiName": "customerkey", "value": KEY}]}
    assert (200, expected) == (status, data)


async def test_second_delete_is_not_found(wire: Wire) -> None:
    """Deleting the same customer twice answers 404 the second time."""
    await wire.activity(activity_body())
    await wire.delete(customerKey=KEY)
    assert (await wire.delete(customerKey=KEY))[0] == 404


async def test_delete_by_tid_removes_the_customer(wire: Wire, mxo_emulator: Emulator) -> None:
    """A delete by TID removes the record, its key index and its activities."""
    _, sent = await wire.activity(activity_body())
    await wire.delete(tid=str(sent["tid"]))
    assert (mxo_emulator.customer(KEY), mxo_emulator.applied_activities()) == (None, [])


async def test_delete_without_identifier_is_bad_request(wire: Wire) -> None:
    """A delete with neither customerKey nor tid gets 400."""
    assert (await wire.delete())[0] == 400


# --- validation -----------------------------------------------------------------------------

_ACT = {"propositionCode": "atm", "activityTypeCode": "balance"}
BAD_ACTIVITY_BODIES = {
    "not an object": [1, 2],
    "missing customerContext": {"activities": [_ACT]},
    "missing baseTouchpointUri": {
        "customerContext": {"identifiers": [{"apiName": "customerkey", "value": KEY}]},
        "activities": [_ACT],
    },
    "neither identifiers nor tid": activity_body(key=None),
    "unknown identifier": activity_body(key=None, identifiers=[{"apiName": "email", "value": "a"}]),
    "empty activities": activity_body(activities=[]),
    "101 activities": activity_body(activities=[_ACT] * 101),
    "missing propositionCode": activity_body(activities=[{"activityTypeCode": "balance"}]),
    "missing activityTypeCode": activity_body(activities=[{"propositionCode": "atm"}]),
    "long dynamicPropositionCode": activity_body(
        activities=[{**_ACT, "dynamicPropositionCode": "d" * 256}]
    ),
    "timestamp without Z": activity_body(
        activities=[{**_ACT, "timestamp": "2018-06-02T23:06:19+00:00"}]
    ),
    "timestamp with a space": activity_body(
        activities=[{**_ACT, "timestamp": "2018-06-02 23:06:19Z"}]
    ),
    "impossible date": activity_body(activities=[{**_ACT, "timestamp": "2018-02-30T23:06:19Z"}]),
    "property value not a string": activity_body(properties=[{"name": "n", "value": 1}]),
}


@pytest.mark.parametrize("case", sorted(BAD_ACTIVITY_BODIES))
async def test_invalid_activity_is_bad_request_and_not_applied(
    wire: Wire, mxo_emulator: Emulator, case: str
) -> None:
    """Each invalid activity body gets 400 with a statusCode body and applies nothing."""
    status, data = await wire.activity(BAD_ACTIVITY_BODIES[case])
    assert (status, data["statusCode"], mxo_emulator.counters.applied_activities) == (400, 400, 0)


async def test_malformed_json_is_bad_request(wire: Wire) -> None:
    """A body that is not JSON gets 400."""
    status, _, raw = await wire.call("POST", "/activity", raw=b'{"customerContext": ')
    assert (status, orjson.loads(raw)["errorMessage"]) == (400, "request body is not valid JSON")


@pytest.mark.parametrize("name", ["customer Profile", "", None])
async def test_bad_structure_name_is_bad_request(wire: Wire, name: str | None) -> None:
    """A structureApiName with spaces, empty or missing gets 400."""
    body = structure_body("x")
    body["structureApiName"] = name
    assert (await wire.structure(body))[0] == 400


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
    observed = (status, headers.get("Retry-After"), orjson.loads(raw)["statusCode"])
    assert (*STATUS_FAULTS[kind], STATUS_FAULTS[kind][0]) == observed
    assert ({kind: 1}, 0) == (emu.counters.faults_injected, emu.counters.applied_activities)


async def test_html_error_fault_sends_a_non_json_body(faulty: tuple[Wire, Emulator]) -> None:
    """The html_error fault answers 502 with an HTML body."""
    wire, emu = faulty
    emu.faults = Faults(html_error=1.0)
    status, headers, raw = await wire.call("POST", "/activity", activity_body())
    assert (status, headers["Content-Type"].split(";")[0]) == (502, "text/html")
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
    assert (emu.counters.applied_activities, emu.counters.status_counts) == (0, {})


async def test_reset_after_applies_then_drops_the_connection(
    faulty: tuple[Wire, Emulator],
) -> None:
    """reset_after stores the activity, then closes the connection with no response."""
    wire, emu = faulty
    await wire.fetch_token()
    emu.faults = Faults(reset_after=1.0)
    with pytest.raises(aiohttp.ClientConnectionError):
        await wire.call("POST", "/activity", activity_body())
    assert (
        emu.counters.applied_activities,
        emu.counters.faults_injected,
    ) == (1, {"reset_after": 1})


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
    assert (status, emu.counters.applied_activities) == (200, 1)


async def test_oversized_fault_pads_a_valid_body(faulty: tuple[Wire, Emulator]) -> None:
    """oversized answers 200 with valid JSON of oversized_bytes bytes."""
    wire, emu = faulty
    emu.faults = Faults(oversized=1.0, oversized_bytes=100_000)
    status, _, raw = await wire.call("POST", "/activity", activity_body())
    assert (status, len(raw), orjson.loads(raw)["statusCode"]) == (200, 100_000, 200)


async def test_slow_body_fault_delivers_the_whole_body(faulty: tuple[Wire, Emulator]) -> None:
    """slow_body sends the complete answer in chunks."""
    wire, emu = faulty
    emu.faults = Faults(slow_body=1.0, slow_body_chunks=3, slow_body_delay=0.01)
    status, _, raw = await wire.call("POST", "/activity", activity_body())
    assert (
        status,
        orjson.loads(raw)["statusCode"],
        emu.counters.faults_injected,
    ) == (200, 200, {"slow_body": 1})


async def test_latency_fault_delays_the_answer(faulty: tuple[Wire, Emulator]) -> None:
    """With latency configured, no answer arrives before the latency has passed."""
    wire, emu = faulty
    await wire.fetch_token()
    emu.faults = Faults(latency=0.3)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(wire.call("POST", "/activity", activity_body()), 0.05)


async def test_max_rate_answers_429_without_retry_after(http: aiohttp.ClientSession) -> None:
    """Above max_rate in a one-second window the answer is 429 without Retry-After."""
    async with Emulator(EmulatorConfig(faults=Faults(max_rate=2)), clock=FakeClock()) as emu:
        wire = Wire(http, emu)
        statuses = [(await wire.call("POST", "/activity", activity_body()))[0] for _ in range(2)]
        status, headers, _ = await wire.call("POST", "/activity", activity_body())
    assert (statuses, status, headers.get("Retry-After")) == ([200, 200], 429, None)


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
    assert (status, 0) == ((await wire.fetch_token())[0], emu.counters.tokens_issued)


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
        (await wire.delete(customerKey=KEY))[0],
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
    await wire.delete(customerKey=KEY)
    await wire.delete(customerKey=KEY)
    c = mxo_emulator.counters
    assert (
        c.token_requests,
        c.requests,
        c.activity_requests,
        c.structure_requests,
        c.delete_requests,
    ) == (1, 5, 2, 1, 2)
    assert (
        c.applied_activities,
        c.activity_requests_applied,
        c.structures_served,
        c.deletes_applied,
    ) == (2, 1, 1, 1)
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
    assert (status, expires_in, proc.returncode, "cli-secret" in line) == (200, 60, 0, False)


async def test_command_line_rejects_a_bad_fault_spec() -> None:
    """A malformed --faults spec is a usage error (exit status 2)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "mxo_async.emulator", "--faults", "teapot=1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert (proc.returncode, b"--faults" in err) == (2, True)


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
