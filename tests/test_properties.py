"""Property tests: identifiers survive encoding exactly; parsers turn any body into a result or an MXOError."""

from __future__ import annotations

import string
import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import mxo_async as mxo
from mxo_async import Activity, ActivityRequest, Customer
from mxo_async._wire import (
    Endpoints,
    build_activity,
    build_delete,
    build_structure,
    decipher_activity,
    decipher_erasure,
    decipher_error,
    decipher_structure,
    decipher_token,
    parse_retry_after,
)
from mxo_async.emulator import Emulator, EmulatorConfig

FUZZ = settings(max_examples=120, deadline=None, derandomize=True)
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# What the models accept: keys are any text without NUL that is not all whitespace; TIDs and codes
# have no surrounding whitespace. Lone surrogates are excluded here (see the surrogate tests below).
text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=40
)
keys = text.filter(lambda s: not s.isspace())
codes = text.filter(lambda s: s == s.strip() and s.strip() != "")
touchpoints = st.builds(
    lambda scheme, rest: f"{scheme}://{rest}",
    st.from_regex(r"[a-z][a-z0-9+.\-]{0,8}", fullmatch=True),
    codes,
)
properties = st.dictionaries(
    keys, st.text(st.characters(exclude_categories=["Cs"]), max_size=20), max_size=4
)
api_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,15}", fullmatch=True).filter(
    lambda name: name != "customerkey"
)
customers = st.one_of(
    st.builds(Customer.by_key, keys),
    st.builds(Customer.by_tid, codes),
    st.builds(lambda t, k: Customer(tid=t, key=k), codes, keys),
    st.builds(Customer.by_identifier, api_names, keys),
    st.builds(
        lambda t, k, ids: Customer(tid=t, key=k, identifiers=ids),
        st.none() | codes,
        st.none() | keys,
        st.dictionaries(api_names, keys, min_size=1, max_size=3),
    ),
)
ENDPOINTS = Endpoints("https://eu2.thunderhead.com", "ONE-LJBKEO4Y7J-5669")


def expected_identifiers(customer: Customer) -> list[dict[str, str]] | None:
    pairs = [] if customer.key is None else [{"apiName": "customerkey", "value": customer.key}]
    pairs += [{"apiName": n, "value": v} for n, v in customer.identifiers.items()]
    return pairs or None


# -- request building ---------------------------------------------------------------------------


@FUZZ
@given(customers, touchpoints, properties)
def test_activity_request_keeps_identifiers_exact(
    customer: Customer, touchpoint: str, props: dict[str, str]
) -> None:
    """build_activity: a bare URL; the body holds exactly the TID, identifiers and context."""
    request = build_activity(
        ENDPOINTS, ActivityRequest(customer, touchpoint, [Activity("p", "t")], props)
    )
    body = orjson.loads(request.body or b"")
    context = body["customerContext"]
    assert ENDPOINTS.activity_url == request.url
    assert "" == urlsplit(request.url).query
    assert customer.tid == context.get("tid")
    assert expected_identifiers(customer) == context.get("identifiers")
    assert touchpoint == context["baseTouchpointUri"]
    assert [{"name": n, "value": v} for n, v in props.items()] == context.get("properties", [])


@FUZZ
@given(customers, touchpoints, codes, properties)
def test_structure_request_keeps_identifiers_exact(
    customer: Customer, touchpoint: str, name: str, props: dict[str, str]
) -> None:
    """build_structure: the structure name and the whole context travel in the body, unaltered."""
    request = build_structure(ENDPOINTS, customer, touchpoint, name, props)
    body = orjson.loads(request.body or b"")
    assert ENDPOINTS.structure_url == request.url
    assert name == body["structureApiName"]
    assert touchpoint == body["customerContext"]["baseTouchpointUri"]
    assert customer.tid == body["customerContext"].get("tid")
    assert expected_identifiers(customer) == body["customerContext"].get("identifiers")


@FUZZ
@given(customers)
@example(Customer(tid="a&b=c", key="x+y z%2F/?#"))
def test_delete_request_body_names_exactly_one_customer(customer: Customer) -> None:
    """build_delete: DELETE {root} whose body is the TID, else the one identifier, exactly."""
    identifiers = expected_identifiers(customer) or []
    if customer.tid is None and len(identifiers) != 1:
        with pytest.raises(mxo.ValidationError):
            build_delete(ENDPOINTS, customer)
        return
    request = build_delete(ENDPOINTS, customer)
    expected = {"tid": customer.tid} if customer.tid is not None else {"identifier": identifiers[0]}
    assert "DELETE" == request.method
    assert ENDPOINTS.root == request.url
    assert expected == orjson.loads(request.body or b"")


@FUZZ
@given(codes)
def test_site_key_is_one_path_segment(site_key: str) -> None:
    """Any site key is percent-encoded into exactly one path segment that decodes back to it."""
    endpoints = Endpoints("https://eu2.thunderhead.com", site_key)
    segments = urlsplit(endpoints.activity_url).path.split("/")
    assert site_key == unquote(segments[-2])
    assert "activity" == segments[-1]


@pytest.mark.parametrize("build", ["activity", "delete"])
def test_a_key_that_is_not_valid_unicode_is_a_validation_error(build: str) -> None:
    """A key with a lone surrogate (e.g. from surrogateescape-decoded input) is rejected as ValidationError."""
    with pytest.raises(mxo.ValidationError):
        customer = Customer.by_key("bad\udcff")
        if build == "activity":
            build_activity(ENDPOINTS, ActivityRequest(customer, "web://x", [Activity("p", "t")]))
        else:
            build_delete(ENDPOINTS, customer)


# -- against the emulator -----------------------------------------------------------------------


@pytest.fixture
async def emulator_client() -> AsyncIterator[tuple[Emulator, mxo.MXOClient]]:
    async with Emulator(EmulatorConfig()) as emu:
        async with mxo.MXOClient(
            emu.base_url, emu.site_key, emu.client_id, emu.client_secret
        ) as client:
            yield emu, client


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(key=keys, touchpoint=touchpoints)
@example(key=" spaced +plus%25&amp;=?#/", touchpoint="web://x")
async def test_emulator_sees_exactly_the_key_sent_and_deleted(
    emulator_client: tuple[Emulator, mxo.MXOClient], key: str, touchpoint: str
) -> None:
    """Send then delete a customer with any key: the emulator stores and erases exactly that key."""
    emu, client = emulator_client
    result = await client.send_activity(Customer.by_key(key), touchpoint, [Activity("p", "t")])
    stored = emu.customer(key)
    erasure = await client.delete_customer(Customer.by_key(key))
    assert stored is not None
    assert key == stored.key
    assert (result.tid,) == stored.tids
    assert touchpoint == stored.activities[-1]["touchpoint"]
    assert (result.tid,) == erasure.tids
    assert (mxo.Identifier("customerkey", key),) == erasure.identifiers
    assert emu.customer(key) is None


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(tid=st.uuids().map(str))
async def test_emulator_sees_exactly_the_tid_sent_and_deleted(
    emulator_client: tuple[Emulator, mxo.MXOClient], tid: str
) -> None:
    """Send then delete a customer by any UUID-shaped TID: the emulator records exactly that TID."""
    emu, client = emulator_client
    await client.send_activity(Customer.by_tid(tid), "web://x", [Activity("p", "t")])
    stored = emu.customer(tid=tid)
    erasure = await client.delete_customer(Customer.by_tid(tid))
    assert stored is not None
    assert tid in stored.tids
    assert tid in erasure.tids
    assert emu.customer(tid=tid) is None


# -- response parsing ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = (
    "tid",
    "errors",
    "errorCode",
    "activity",
    "structure",
    "structureApiName",
    "statusCode",
    "tids",
    "identifiers",
    "apiName",
    "value",
    "access_token",
    "expires_in",
    "token_type",
    "errorMessage",
    "error",
    "tier",
    "offers",
)
shaped = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
documents = st.one_of(json_values, shaped, st.lists(shaped, max_size=2))
bodies = st.one_of(
    st.binary(max_size=64),
    documents.map(orjson.dumps),
    st.tuples(documents.map(orjson.dumps), st.integers(0, 64)).map(
        lambda t: t[0][: t[1]]
    ),  # truncated
)


@attrs.frozen
class Offer:
    code: str


@attrs.frozen
class Profile:
    tier: str
    offers: list[Offer]


statuses = st.sampled_from([200, 200, 200, 400, 401, 403, 404, 429, 500, 503, 524])


@FUZZ
@given(statuses, bodies)
def test_an_activity_answer_is_a_result_or_an_mxo_error(status: int, body: bytes) -> None:
    """decipher_activity: an ActivityResult only for a 200; otherwise an MXOError, nothing else."""
    try:
        result = decipher_activity(status, {}, body, NOW)
    except mxo.RejectedActivitiesError as error:
        assert 200 == status
        assert error.rejected
        return
    except mxo.ResponseFormatError:
        assert 200 == status
        return
    except mxo.APIStatusError as error:
        assert status == error.status
        return
    assert 200 == status
    assert isinstance(result.tid, str)
    assert result.ok


@FUZZ
@given(statuses, bodies, st.sampled_from([None, Profile]))
def test_a_structure_answer_is_a_structure_or_an_mxo_error(
    status: int, body: bytes, into: type[Profile] | None
) -> None:
    """decipher_structure (as dict or into an attrs class): a Structure or an MXOError."""
    try:
        structure = decipher_structure(status, {}, body, NOW, "p", into)
    except mxo.ResponseFormatError:
        assert 200 == status
        return
    except mxo.APIStatusError:
        return
    assert 200 == status
    assert isinstance(structure.attributes, dict if into is None else Profile)


@FUZZ
@given(statuses, bodies)
def test_an_erasure_answer_is_an_erasure_or_an_mxo_error(status: int, body: bytes) -> None:
    """decipher_erasure: an Erasure (found=False only for a CUSTOMER_NOT_FOUND 404) or an MXOError."""
    try:
        erasure = decipher_erasure(status, {}, body, NOW)
    except mxo.ResponseFormatError:
        assert 200 == status
        return
    except mxo.APIStatusError as error:
        assert status == error.status
        return
    assert (status == 200) == erasure.found
    assert all(isinstance(t, str) for t in erasure.tids)


ascii_expiry = st.one_of(json_values, st.text(string.printable, max_size=6))
token_bodies = st.one_of(
    bodies,
    st.fixed_dictionaries(
        {"access_token": json_values},
        optional={"expires_in": ascii_expiry, "token_type": json_values},
    ).map(orjson.dumps),
)


@FUZZ
@given(st.sampled_from([200, 400, 401, 403]), token_bodies)
def test_parse_token_returns_a_grant_or_an_mxo_error(status: int, body: bytes) -> None:
    """decipher_token: a grant, ResponseFormatError, or AuthenticationError for 400/401/403."""
    try:
        grant = decipher_token(status, {}, body, NOW)
    except mxo.AuthenticationError:
        assert status in (400, 401, 403)
        return
    except mxo.ResponseFormatError:
        assert 200 == status
        return
    assert isinstance(grant.access_token, str)
    assert grant.access_token
    assert grant.expires_in is None or grant.expires_in > 0


@pytest.mark.parametrize("expires_in", ["²", "①", "3²"])
def test_parse_token_with_a_unicode_digit_expiry_is_not_a_crash(expires_in: str) -> None:
    """An expires_in of non-ASCII digit characters is ignored (or a ResponseFormatError), never ValueError."""
    body = orjson.dumps({"access_token": "a", "expires_in": expires_in})
    try:
        grant = decipher_token(200, {}, body, NOW)
    except mxo.ResponseFormatError:
        return
    assert grant.expires_in is None


@FUZZ
@given(st.integers(100, 599), bodies, st.one_of(st.none(), st.text(max_size=40)))
def test_parse_error_always_returns_a_status_error(
    status: int, body: bytes, retry_after: str | None
) -> None:
    """decipher_error: an APIStatusError for that status, a short message without C0 controls."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    error = decipher_error(status, headers, body, NOW)
    assert status == error.status
    assert len(error.message) <= 201
    assert "" == "".join(c for c in error.message if c < " " or c == "\x7f")
    assert error.retry_after is None or 0.0 <= error.retry_after < float("inf")


@pytest.mark.parametrize("text", ["\x9b31mred", "a\x85next", "line\u2028break"])
def test_error_messages_carry_no_terminal_or_line_controls(text: str) -> None:
    """A hostile error body cannot smuggle C1 controls or line separators into messages and logs."""
    error = decipher_error(500, {}, orjson.dumps({"errorMessage": text}), NOW)
    assert "" == "".join(c for c in error.message if unicodedata.category(c) in ("Cc", "Zl", "Zp"))


@FUZZ
@given(st.text(max_size=40))
@example("Wed, 21 Oct 2015 07:28:00 GMT")
@example("1e999")
@example("nan")
def test_parse_retry_after_never_raises(value: str) -> None:
    """parse_retry_after: None or finite seconds >= 0, for any header value."""
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or 0.0 <= seconds < float("inf")
