"""The contract test: every request the client builds is one the vendor's API accepts.

Requests are built by ``mxo_async._wire`` from hypothesis-generated customers, devices, activities,
properties and touchpoints; each body is validated against the JSON Schema of the request bodies
(``mxo_async/emulator/customer_api_requests.schema.json``, written from the wire contract's facts), and each
URL is checked for its method and path, no query string and no trailing slash. The emulator
enforces the same schema: it refuses what the schema refuses, and accepts what the client builds.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxo_async import Activity, ActivityRequest, Customer, Device
from mxo_async._models import DEVICE_TYPES, OPERATING_SYSTEMS
from mxo_async._wire import (
    Endpoints,
    WireRequest,
    build_activity,
    build_delete,
    build_structure,
)
from mxo_async.emulator import Emulator, EmulatorConfig
from mxo_async.emulator._schema import compile_checks, compile_validators

CONTRACT = settings(max_examples=150, deadline=None, derandomize=True)
VALIDATORS = compile_validators()
CHECKS = compile_checks()
API_PATH = "/one/oauth2/rt/api/3.1.0/customer/"

# -- strategies: what the client's models accept ----------------------------------------------

_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
texts = st.text(_chars, min_size=1, max_size=24).filter(lambda s: not s.isspace())
codes = texts.filter(lambda s: s == s.strip())
api_names = st.text(
    st.characters(exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=16
).filter(lambda s: not any(ch.isspace() for ch in s))
key_attributes = st.sampled_from(["customerkey", "email", "crmId", "loyalty_no"])
# UUID-shaped with any version digit (MXO's TIDs are not all UUIDv4).
tids = st.from_regex(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", fullmatch=True
)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=-4)), timezone(timedelta(hours=5, minutes=30))]
)
past = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2024, 1, 1), timezones=zones)
touchpoints = st.builds(
    lambda scheme, rest: f"{scheme}://{rest}",
    st.from_regex(r"[a-z][a-z0-9+.\-]{0,8}", fullmatch=True),
    codes,
)
properties = st.dictionaries(texts, st.text(_chars, max_size=20), max_size=4)
site_keys = st.from_regex(r"ONE-[A-Z0-9]{10}-[0-9]{4}", fullmatch=True) | codes
base_urls = st.sampled_from(
    ["https://eu2.thunderhead.com", "https://na5.thunderhead.com/", "http://127.0.0.1:8080"]
)
structure_names = codes.filter(lambda s: not any(ch.isspace() for ch in s))


@st.composite
def customers(draw: st.DrawFn, key_attribute: str) -> Customer:
    """Any customer: a TID, a key, other identifiers, or several of them."""
    others = st.dictionaries(
        api_names.filter(lambda name: name != key_attribute), texts, min_size=1, max_size=3
    )
    shape = draw(st.sampled_from(["tid", "key", "identifier", "mixed"]))
    if shape == "tid":
        return Customer.by_tid(draw(tids))
    if shape == "key":
        return Customer.by_key(draw(texts))
    if shape == "identifier":
        return Customer(identifiers=draw(others))
    tid, key = draw(st.none() | tids), draw(st.none() | texts)
    identifiers = draw(others)
    if key is not None and draw(st.booleans()):
        identifiers[key_attribute] = key  # the key repeated under its attribute is allowed
    return Customer(tid=tid, key=key, identifiers=identifiers)


@st.composite
def deletable_customers(draw: st.DrawFn, key_attribute: str) -> Customer:
    """A customer a delete can name: a TID (whatever else it has), or exactly one identifier."""
    shape = draw(st.sampled_from(["tid", "key", "identifier"]))
    if shape == "tid":
        return Customer(tid=draw(tids), key=draw(st.none() | texts))
    if shape == "key":
        return Customer.by_key(draw(texts))
    name = draw(api_names.filter(lambda n: n != key_attribute))
    return Customer.by_identifier(name, draw(texts))


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


devices = st.builds(
    Device,
    app_name=texts,
    dev_type=st.sampled_from(sorted(DEVICE_TYPES)),
    os_name=st.sampled_from(sorted(OPERATING_SYSTEMS)),
    app_version=_optional(texts),
    manufacturer=_optional(texts),
    model=_optional(texts),
    os_version=_optional(texts),
    latitude=_optional(st.floats(-90, 90) | st.integers(-90, 90)),
    longitude=_optional(st.floats(-180, 180)),
    location_updated=_optional(past),
    location_accuracy=_optional(st.floats(0, 1e6)),
    ip_address=_optional(st.sampled_from(["127.0.0.1", "2001:db8::1"])),
    locale=_optional(st.sampled_from(["en-US", "fr_FR"])),
    push_token=_optional(texts),
)
activities = st.builds(
    Activity,
    proposition=codes,
    activity_type=codes,
    dynamic_proposition=_optional(codes.filter(lambda s: len(s) <= 255)),
    timestamp=_optional(past),
)


@st.composite
def endpoints(draw: st.DrawFn) -> Endpoints:
    """A tenant: base URL, site key and the API name of its key attribute."""
    return Endpoints(draw(base_urls), draw(site_keys), customer_key_attribute=draw(key_attributes))


@st.composite
def activity_requests(draw: st.DrawFn) -> tuple[Endpoints, WireRequest]:
    where = draw(endpoints())
    request = ActivityRequest(
        draw(customers(where.customer_key_attribute)),
        draw(touchpoints),
        draw(st.lists(activities, min_size=1, max_size=100)),
        draw(properties),
        draw(_optional(devices)),
    )
    return where, build_activity(where, request)


@st.composite
def structure_requests(draw: st.DrawFn) -> tuple[Endpoints, WireRequest]:
    where = draw(endpoints())
    customer = draw(customers(where.customer_key_attribute))
    built = build_structure(
        where,
        customer,
        draw(touchpoints),
        draw(structure_names),
        draw(properties),
        draw(_optional(devices)),
    )
    return where, built


@st.composite
def delete_requests(draw: st.DrawFn) -> tuple[Endpoints, WireRequest]:
    where = draw(endpoints())
    return where, build_delete(where, draw(deletable_customers(where.customer_key_attribute)))


def body_of(request: WireRequest) -> Any:
    assert request.body is not None
    return orjson.loads(request.body)


def schema_errors(kind: str, body: Any) -> list[str]:
    """jsonschema's complaints about ``body`` (empty when the schema accepts it)."""
    return [f"{e.json_path}: {e.message}" for e in VALIDATORS[kind].iter_errors(body)]


def site_key_segment(url: str, suffix: str) -> str:
    """The site key segment of an API URL, checked to be followed by exactly ``suffix``."""
    path = urlsplit(url).path
    assert path.startswith(API_PATH)
    assert path.endswith(suffix)
    segment = path[len(API_PATH) : len(path) - len(suffix)]
    assert "/" not in segment
    return unquote(segment)


# -- request bodies validate against the schema -------------------------------------------------


@CONTRACT
@given(activity_requests())
def test_activity_bodies_match_the_schema(built: tuple[Endpoints, WireRequest]) -> None:
    """Every send-activity body the client builds is valid against the schema."""
    assert [] == schema_errors("activity", body_of(built[1]))


@CONTRACT
@given(structure_requests())
def test_structure_bodies_match_the_schema(built: tuple[Endpoints, WireRequest]) -> None:
    """Every structure body the client builds is valid against the schema."""
    assert [] == schema_errors("structure", body_of(built[1]))


@CONTRACT
@given(delete_requests())
def test_delete_bodies_match_the_schema(built: tuple[Endpoints, WireRequest]) -> None:
    """Every delete body the client builds is valid against the schema."""
    assert [] == schema_errors("delete", body_of(built[1]))


@CONTRACT
@given(activity_requests())
def test_activity_timestamps_are_sent_in_utc(built: tuple[Endpoints, WireRequest]) -> None:
    """Activity timestamps go out in UTC with a Z suffix, as docs/wire-contract.md asks."""
    stamps = [a["timestamp"] for a in body_of(built[1])["activities"] if "timestamp" in a]
    assert [] == [s for s in stamps if not s.endswith("Z")]


# -- methods, paths, no query strings ---------------------------------------------------------


@CONTRACT
@given(activity_requests())
def test_activity_request_line(built: tuple[Endpoints, WireRequest]) -> None:
    """POST {root}/activity with the site key as one segment, no query string, no fragment."""
    where, request = built
    parts = urlsplit(request.url)
    assert "POST" == request.method
    assert "" == parts.query
    assert "" == parts.fragment
    assert where.site_key == site_key_segment(request.url, "/activity")


@CONTRACT
@given(structure_requests())
def test_structure_request_line(built: tuple[Endpoints, WireRequest]) -> None:
    """POST {root}/structure with the site key as one segment, no query string, no fragment."""
    where, request = built
    parts = urlsplit(request.url)
    assert "POST" == request.method
    assert "" == parts.query
    assert "" == parts.fragment
    assert where.site_key == site_key_segment(request.url, "/structure")


@CONTRACT
@given(delete_requests())
def test_delete_request_line(built: tuple[Endpoints, WireRequest]) -> None:
    """DELETE {root}: the site key is the last segment (no trailing slash), no query string."""
    where, request = built
    parts = urlsplit(request.url)
    assert "DELETE" == request.method
    assert "" == parts.query
    assert "" == parts.fragment
    assert where.site_key == site_key_segment(request.url, "")


@CONTRACT
@given(st.one_of(activity_requests(), structure_requests(), delete_requests()))
def test_every_request_sends_a_json_body(built: tuple[Endpoints, WireRequest]) -> None:
    """Every API call, the DELETE too, carries Content-Type application/json and a JSON object."""
    _, request = built
    assert "application/json" == request.headers["Content-Type"]
    assert isinstance(body_of(request), dict)


# -- the emulator's compiled predicates agree with jsonschema ---------------------------------

LEAVES = st.sampled_from(
    [
        "",
        " ",
        "a b",
        "x",
        "SMARTPHONE",
        "IOS",
        "PDA",
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00.5-04:00",
        "2024-02-30T00:00:00Z",
        "2024-01-01 00:00:00Z",
        "a08ad08f-e305-8f9c-9116-add167624b57",
        "a08ad08f-e305-8f9c-9116-add16762",
        "d" * 256,
    ]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["tid", "apiName", "value", "name", "appName", "x"]), inner, max_size=3
        )
    ),
    max_leaves=6,
)


# Members to add, each with a value that is valid where the member belongs.
PLAUSIBLE: dict[str, Any] = {
    "extra": "x",
    "tid": "a08ad08f-e305-8f9c-9116-add167624b57",
    "identifier": {"apiName": "email", "value": "a@example.com"},
    "identifiers": [{"apiName": "email", "value": "a@example.com"}],
    "device": {"appName": "a", "devType": "PDA", "osName": "OTHER"},
    "timestamp": "2024-01-01T00:00:00Z",
}


def _containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every object and array in ``node``, the root first."""
    found: list[tuple[Any, ...]] = []
    if isinstance(node, dict):
        found.append(path)
        for name, value in node.items():
            found += _containers(value, (*path, name))
    elif isinstance(node, list):
        found.append(path)
        for index, value in enumerate(node):
            found += _containers(value, (*path, index))
    return found


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


@st.composite
def mutated(draw: st.DrawFn, body: Any) -> Any:
    """``body`` with one change: a member dropped, added or replaced, or an item replaced."""
    container = _at(body, draw(st.sampled_from(_containers(body))))
    if isinstance(container, dict):
        action = draw(st.sampled_from(["drop", "add", "replace"]))
        if action == "add" or not container:
            name = draw(st.sampled_from(sorted(PLAUSIBLE)))
            container[name] = draw(st.just(PLAUSIBLE[name]).map(copy.deepcopy) | json_values)
        elif action == "drop":
            del container[draw(st.sampled_from(sorted(container)))]
        else:
            container[draw(st.sampled_from(sorted(container)))] = draw(json_values)
    elif container:
        container[draw(st.integers(0, len(container) - 1))] = draw(json_values)
    else:
        container.append(draw(json_values))
    return body


@st.composite
def mutated_bodies(draw: st.DrawFn) -> tuple[str, Any]:
    kind, strategy = draw(
        st.sampled_from(
            [
                ("activity", activity_requests()),
                ("structure", structure_requests()),
                ("delete", delete_requests()),
            ]
        )
    )
    body = body_of(draw(strategy)[1])
    return kind, draw(mutated(body)) if draw(st.integers(0, 4)) else body


@settings(max_examples=400, deadline=None, derandomize=True)
@given(mutated_bodies())
def test_compiled_checks_agree_with_jsonschema(case: tuple[str, Any]) -> None:
    """The emulator's compiled predicate accepts a body exactly when jsonschema does."""
    kind, body = case
    assert VALIDATORS[kind].is_valid(body) == CHECKS[kind](body)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.sampled_from(["activity", "structure", "delete"]), json_values)
def test_compiled_checks_agree_on_any_json(kind: str, body: Any) -> None:
    """On arbitrary JSON too, the predicate and jsonschema give the same verdict."""
    assert VALIDATORS[kind].is_valid(body) == CHECKS[kind](body)


# -- the emulator enforces the schema ---------------------------------------------------------

ACTIVITY = {"propositionCode": "atm", "activityTypeCode": "view"}
CONTEXT = {
    "identifiers": [{"apiName": "customerkey", "value": "alice@example.com"}],
    "baseTouchpointUri": "web://bank.com",
}
REFUSED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "activity: unknown top-level member": (
        "/activity",
        "POST",
        {"customerContext": CONTEXT, "activities": [ACTIVITY], "channel": "web"},
    ),
    "activity: unknown activity member": (
        "/activity",
        "POST",
        {"customerContext": CONTEXT, "activities": [{**ACTIVITY, "weight": 1}]},
    ),
    "activity: unknown device member": (
        "/activity",
        "POST",
        {
            "customerContext": {
                **CONTEXT,
                "device": {"appName": "a", "devType": "PDA", "osName": "IOS", "colour": "red"},
            },
            "activities": [ACTIVITY],
        },
    ),
    "structure: unknown context member": (
        "/structure",
        "POST",
        {"customerContext": {**CONTEXT, "customerKey": "x"}, "structureApiName": "customerProfile"},
    ),
    "delete: tid and identifier": (
        "",
        "DELETE",
        {
            "tid": "a08b10a4-ead9-7667-9116-add167624b57",
            "identifier": {"apiName": "customerkey", "value": "alice@example.com"},
        },
    ),
}
_KIND = {"/activity": "activity", "/structure": "structure", "": "delete"}


async def _token(http: aiohttp.ClientSession, emu: Emulator) -> str:
    pair = base64.b64encode(f"{emu.client_id}:{emu.client_secret}".encode()).decode()
    async with http.post(
        emu.token_url,
        data=b"grant_type=client_credentials",
        headers={"Authorization": f"Basic {pair}"},
    ) as resp:
        return str((await resp.json())["access_token"])


@pytest.fixture
async def send() -> AsyncIterator[Callable[..., Any]]:
    """Send a request to an emulator over raw HTTP: ``await send(emu, method, url, body)``."""
    async with aiohttp.ClientSession() as http:
        tokens: dict[int, str] = {}

        async def go(emu: Emulator, method: str, url: str, body: bytes) -> tuple[int, Any]:
            if id(emu) not in tokens:
                tokens[id(emu)] = await _token(http, emu)
            headers = {
                "Authorization": f"Bearer {tokens[id(emu)]}",
                "Content-Type": "application/json",
            }
            async with http.request(method, url, data=body, headers=headers) as resp:
                return resp.status, orjson.loads(await resp.read())

        yield go


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_emulator_refuses_what_the_schema_refuses(
    mxo_emulator: Emulator, send: Callable[..., Any], case: str
) -> None:
    """A body the schema refuses (an unknown member, two customer names) is a 400 from the emulator."""
    path, method, body = REFUSED[case]
    status, answer = await send(
        mxo_emulator, method, mxo_emulator.api_root() + path, orjson.dumps(body)
    )
    assert not VALIDATORS[_KIND[path]].is_valid(body)
    assert 400 == status
    assert "GENERAL" == answer["errorCode"]


async def test_emulator_accepts_what_the_client_builds(send: Callable[..., Any]) -> None:
    """Requests built by the client for a space keyed by 'email' are answered 200 by the emulator."""
    config = EmulatorConfig(key_attribute="email")
    async with Emulator(config) as emu:
        where = Endpoints(emu.base_url, emu.site_key, customer_key_attribute="email")
        customer = Customer(key="alice@example.com", identifiers={"crmId": "c-1"})
        device = Device("CustomerFirst", "SMARTPHONE", "IOS", latitude=51.5, longitude=-0.1)
        stamp = datetime(2024, 1, 1, tzinfo=UTC)
        requests = [
            build_activity(
                where,
                ActivityRequest(
                    customer,
                    "web://bank.com",
                    [Activity("atm", "view", "atm-1", stamp)],
                    {"segment": "young"},
                    device,
                ),
            ),
            build_structure(where, customer, "web://bank.com", "customerProfile", {}, device),
            build_delete(where, Customer.by_key("alice@example.com")),
        ]
        statuses = [(await send(emu, r.method, r.url, r.body))[0] for r in requests]
    assert [200, 200, 200] == statuses
