"""Hostile servers and careless callers: token answers, delete answers and base URLs (issue 13)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mxo_async as mxo
from mxo_async import MXOError, ResponseFormatError, ValidationError
from mxo_async._transport import RawResponse
from mxo_async._wire import TokenGrant, decipher_erasure, decipher_token

from .fakes import FakeClock, FakeTransport, Sent, response

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
BEARER = re.compile(r"Bearer [A-Za-z0-9\-._~+/]+=*")


def token_answer(**fields: object) -> TokenGrant:
    """decipher_token of a 200 whose JSON body holds ``fields``."""
    return decipher_token(200, {}, orjson.dumps(fields), NOW)


# -- token lifetimes (item 8) ------------------------------------------------------------------


@pytest.mark.parametrize("digits", [13, 400, 5_000])
def test_absurd_expires_in_string_is_ignored(digits: int) -> None:
    """expires_in of hundreds of digits (OverflowError, ValueError before) falls back to the default."""
    assert None is token_answer(access_token="tok", expires_in="9" * digits).expires_in


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [(3600, 3600.0), ("3600", 3600.0), (1e26, 86400.0), ("999999999999", 86400.0), (0.001, 1.0)],
)
def test_expires_in_is_clamped_to_one_second_to_one_day(
    expires_in: object, expected: float
) -> None:
    """A usable lifetime is kept within [1 s, 1 day]."""
    assert expected == token_answer(access_token="tok", expires_in=expires_in).expires_in


@pytest.mark.parametrize(
    "expires_in", [0, -5, True, "", "12a", "-1", "\uff11\uff12", None, [60], {"s": 1}]
)
def test_unusable_expires_in_is_ignored(expires_in: object) -> None:
    """An expires_in that is no positive number leaves the lifetime to the client's default."""
    assert None is token_answer(access_token="tok", expires_in=expires_in).expires_in


# -- token characters (item 8) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "tok\r\nX-Injected: 1",
        "tok\n",
        "tok\x00en",
        "tok en",
        "tök",
        "tok=en",
        "=",
        "tok\u2028",
        "a" * 8001,
    ],
)
def test_token_outside_rfc6750_is_refused_without_quoting_it(token: str) -> None:
    """A token an Authorization header cannot carry is a ResponseFormatError that never shows it."""
    with pytest.raises(ResponseFormatError) as info:
        token_answer(access_token=token, expires_in=60)
    assert token not in str(info.value)


@pytest.mark.parametrize("token", ["abc", "A-Z.a_z~0+9/", "eyJhbGciOi.eyJzdWIi.c2ln==", "a" * 8000])
def test_rfc6750_tokens_are_accepted(token: str) -> None:
    """Every b64token of at most 8,000 characters is accepted as it is."""
    assert token == token_answer(access_token=token).access_token


def test_non_string_token_type_is_read_as_bearer() -> None:
    """A token_type that is no string does not become str() of whatever was sent."""
    assert "Bearer" == token_answer(access_token="tok", token_type={"x": [1] * 10}).token_type


# -- any token answer gives a grant or an MXOError ---------------------------------------------

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["9" * 400, "9" * 5_000, "3600", "tok\r\n", "tok\x00", "Mon, 01 Jan 2024"]),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
EXPIRES_IN = st.one_of(
    JSON,
    st.integers(-10, 10**30).map(str),
    st.text("0123456789", min_size=1, max_size=5_000),
)
ACCESS_TOKEN = st.one_of(
    st.from_regex(B64TOKEN, fullmatch=True),
    st.text("ab+/=-._~ \r\n\x00\t\u2028é", min_size=1, max_size=20),
    st.text(max_size=40),
    JSON,
)
OPTIONAL_FIELDS = {
    "expires_in": EXPIRES_IN,
    "token_type": JSON,
    "error": JSON,
    "error_description": JSON,
    "errorCode": JSON,
    "errorMessage": JSON,
}
TOKEN_FIELDS = st.one_of(
    st.fixed_dictionaries({"access_token": ACCESS_TOKEN}, optional=OPTIONAL_FIELDS),
    st.fixed_dictionaries({}, optional={"access_token": ACCESS_TOKEN, **OPTIONAL_FIELDS}),
)
BODIES = st.one_of(
    TOKEN_FIELDS.map(orjson.dumps),
    JSON.map(orjson.dumps),
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"<html>502</html>", b"\xff\xfe", b"[" * 2000, b"null"]),
)
STATUSES = st.one_of(
    st.just(200),  # a third of the examples: most of what can go wrong is in a 200
    st.sampled_from([200, 400, 401, 403, 404, 408, 429, 500, 503, 524, 599]),
    st.integers(100, 999),
)
HEADER_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["1e999", "nan", "-1", "9" * 400, "Mon, 01 Jan 99999 00:00:00 GMT", "0"]),
    st.from_regex(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{1,5} \d{2}:\d{2}:\d{2} [A-Z+\-0-9]{1,5}"),
)
HEADERS = st.dictionaries(
    st.sampled_from(["Retry-After", "Content-Type", "WWW-Authenticate", "X-Other"]),
    HEADER_VALUES,
    max_size=3,
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(STATUSES, HEADERS, BODIES)
def test_any_token_answer_gives_a_grant_or_an_mxo_error(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    """decipher_token of any status, headers and body returns a usable grant or raises MXOError."""
    try:
        grant = decipher_token(status, headers, body, NOW)
    except MXOError:
        return
    lifetime = grant.expires_in
    assert (200, True, True) == (
        status,
        B64TOKEN.fullmatch(grant.access_token) is not None,
        lifetime is None or 1.0 <= lifetime <= 86400.0,
    )


def hostile_client(answer: RawResponse) -> tuple[mxo.MXOClient, FakeTransport]:
    """A client whose first token request gets ``answer`` and every later one a good token."""
    answers = [answer]

    def token(sent: Sent) -> RawResponse:
        return (
            answers.pop() if answers else response(200, {"access_token": "good", "expires_in": 60})
        )

    transport = FakeTransport(lambda sent: response(200, {"tid": "t-1", "errors": []}), token)
    client = mxo.MXOClient(
        "https://eu2.thunderhead.com",
        "S",
        "id",
        "secret",
        transport=transport,
        clock=FakeClock(),
        retry=mxo.RetryPolicy(max_attempts=1, max_rate_limited_attempts=1),
    )
    return client, transport


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STATUSES, HEADERS, BODIES)
def test_any_token_answer_leaves_the_client_working(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    """Through MXOClient, any token answer ends the call in a result or an MXOError, only
    RFC 6750 tokens are ever sent, and the next call succeeds (nothing unusable is cached)."""
    client, transport = hostile_client(RawResponse(status, headers, body))
    customer, activity = mxo.Customer.by_key("k"), mxo.Activity("p", "t")

    async def main() -> str:
        async with client:
            with contextlib.suppress(MXOError):
                await client.send_activity(customer, "atm://a", activity)
            return (await client.send_activity(customer, "atm://a", activity)).tid

    tid = asyncio.run(main())
    sent = [call.headers["Authorization"] for call in transport.api_calls]
    assert ("t-1", []) == (tid, [h for h in sent if not BEARER.fullmatch(h)])


# -- delete answers (item 12) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"tids": "abc"},
        {"tids": ["t-1", 2]},
        {"tids": {"t-1": True}},
        {"identifiers": {"apiName": "customerkey", "value": "a"}},
        {"identifiers": ["customerkey"]},
        {"identifiers": [{"apiName": "customerkey"}]},
        {"identifiers": [{"apiName": "customerkey", "value": 42}]},
        {"identifiers": [{"apiName": None, "value": "a"}]},
    ],
)
def test_mistyped_erasure_answer_is_a_response_format_error(body: dict[str, object]) -> None:
    """A delete answer whose tids or identifiers have the wrong shape is refused, not coerced."""
    with pytest.raises(ResponseFormatError):
        decipher_erasure(200, {}, orjson.dumps(body), NOW)


def test_well_formed_erasure_answer_is_read() -> None:
    """A delete answer of string TIDs and identifier objects becomes an Erasure (extra keys ignored)."""
    body = {
        "tids": ["t-1", "t-2"],
        "identifiers": [{"apiName": "customerkey", "value": "alice", "extra": 1}],
    }
    erasure = decipher_erasure(200, {}, orjson.dumps(body), NOW)
    assert mxo.Erasure(("t-1", "t-2"), (mxo.Identifier("customerkey", "alice"),)) == erasure


@pytest.mark.parametrize("body", [{}, {"tids": None, "identifiers": None}, {"tids": []}])
def test_erasure_answer_without_members_is_empty(body: dict[str, object]) -> None:
    """Missing or null members read as nothing listed."""
    assert mxo.Erasure() == decipher_erasure(200, {}, orjson.dumps(body), NOW)


@settings(max_examples=300)
@given(JSON)
def test_any_erasure_answer_gives_string_tids_or_an_mxo_error(data: object) -> None:
    """Any JSON 200 to a delete gives an Erasure of strings only, or raises MXOError."""
    try:
        erasure = decipher_erasure(200, {}, orjson.dumps({"tids": data, "identifiers": data}), NOW)
    except MXOError:
        return
    values = [
        *erasure.tids,
        *(i.api_name for i in erasure.identifiers),
        *(i.value for i in erasure.identifiers),
    ]
    assert [] == [v for v in values if not isinstance(v, str)]


# -- base_url and token_url (item 11) ----------------------------------------------------------


def make_client(base_url: str, **kwargs: object) -> mxo.MXOClient:
    return mxo.MXOClient(base_url, "S", "id", "secret", transport=FakeTransport(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "base_url",
    [
        "https://eu2.thunderhead.com /x",
        " https://eu2.thunderhead.com",
        "https://eu2.thunderhead.com\r\nX-Injected: 1",
        "https://eu2.thunderhead.com/\n",
        "https://eu2.thunderhead.com\t",
        "https://eu2.thunderhead.com/\x00",
        "https://eu2.thunder\u202ehead.com",
        "https://eu2.thunderhead.com\\@evil.example",
        'https://eu2.thunderhead.com/a"b',
        "https://eu2.thunderhead.com:99999",
        "https://[::1",
        "https://eu2<x>.thunderhead.com",
        "https://eu2.thunderhead.com/?",
    ],
)
def test_base_url_with_spaces_controls_or_junk_is_refused(base_url: str) -> None:
    """base_url with whitespace, control characters or characters no URL holds raises ValidationError."""
    with pytest.raises(ValidationError) as info:
        make_client(base_url)
    assert "base_url" == info.value.field


@pytest.mark.parametrize(
    "base_url",
    [
        "https://user:hunter2@eu2.thunderhead.com",
        "https://:hunter2@eu2.thunderhead.com",
        "https://user@eu2.thunderhead.com",
        "user:hunter2@eu2.thunderhead.com",
    ],
)
def test_base_url_with_credentials_is_refused_without_echoing_them(base_url: str) -> None:
    """user:password@ in base_url is refused, and the password is not in the message."""
    with pytest.raises(ValidationError) as info:
        make_client(base_url)
    assert ("base_url", False) == (info.value.field, "hunter2" in str(info.value))


def test_token_url_with_credentials_is_refused() -> None:
    """token_url gets the same checks as base_url."""
    with pytest.raises(ValidationError) as info:
        make_client("https://eu2.thunderhead.com", token_url="https://u:hunter2@idp.example/token")
    assert ("token_url", False) == (info.value.field, "hunter2" in str(info.value))


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://eu2.thunderhead.com", "https://eu2.thunderhead.com"),
        ("https://eu2.thunderhead.com/", "https://eu2.thunderhead.com"),
        (
            "https://eu2.thunderhead.com:8443/prefix%20x/",
            "https://eu2.thunderhead.com:8443/prefix%20x",
        ),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://localhost", "http://localhost"),
        ("https://bücher.example", "https://bücher.example"),
    ],
)
def test_plain_base_urls_are_accepted(base_url: str, expected: str) -> None:
    """Ordinary http(s) URLs (a port, a path, loopback, IPv6, IDN) are accepted."""
    assert expected == make_client(base_url).target["base_url"]


def test_repr_never_holds_a_password() -> None:
    """Since userinfo is refused, repr(client) shows the base URL as given and nothing else."""
    assert (
        "MXOClient(base_url='https://eu2.thunderhead.com', site_key='S', client_id='id')"
        == repr(make_client("https://eu2.thunderhead.com"))
    )
