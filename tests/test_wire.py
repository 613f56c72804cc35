"""Requests built by the wire module match WIRE.md byte for byte; responses parse leniently."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import attrs
import orjson
import pytest

from mxo_async import (
    Activity,
    ActivityRequest,
    ActivityResult,
    Customer,
    Erasure,
    Identifier,
    NotFoundError,
    RateLimitedError,
    ResponseFormatError,
    ServerError,
)
from mxo_async._errors import AuthenticationError
from mxo_async._wire import (
    Endpoints,
    build_activity,
    build_delete,
    build_structure,
    build_token_request,
    format_timestamp,
    parse_activity,
    parse_erasure,
    parse_error,
    parse_retry_after,
    parse_structure,
    parse_token,
)

ENDPOINTS = Endpoints("https://eu2.thunderhead.com", "ONE-LJBKEO4Y7J-5669")
ROOT = "https://eu2.thunderhead.com/one/oauth2/rt/api/3.1.0/customer/ONE-LJBKEO4Y7J-5669"
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def test_activity_request_matches_the_wire_sample() -> None:
    """The WIRE.md activity sample is reproduced byte for byte."""
    request = ActivityRequest(
        Customer.by_key("alice@example.com"),
        "atm://atm",
        [
            Activity(
                "atm",
                "balance_inquiry",
                dynamic_proposition="atm-12345",
                timestamp=datetime(2018, 6, 2, 23, 6, 19, tzinfo=UTC),
            )
        ],
        {"campaign": "summer"},
    )
    wire = build_activity(ENDPOINTS, request)
    expected = (
        b'{"customerContext":{"identifiers":[{"apiName":"customerkey","value":"alice@example.com"}],'
        b'"properties":[{"name":"campaign","value":"summer"}],"baseTouchpointUri":"atm://atm"},'
        b'"activities":[{"propositionCode":"atm","dynamicPropositionCode":"atm-12345",'
        b'"activityTypeCode":"balance_inquiry","timestamp":"2018-06-02T23:06:19Z"}]}'
    )
    assert ("POST", ROOT + "/activity", expected) == (wire.method, wire.url, wire.body)


def test_activity_headers_are_json() -> None:
    """Activity requests declare JSON in both directions."""
    wire = build_activity(
        ENDPOINTS, ActivityRequest(Customer.by_key("k"), "web://x", [Activity("p", "t")])
    )
    assert ("application/json", "application/json") == (
        wire.headers["Content-Type"],
        wire.headers["Accept"],
    )


def test_optional_fields_are_omitted_not_null() -> None:
    """No properties, no identifiers (TID only) and no optional activity fields: keys absent."""
    request = ActivityRequest(
        Customer.by_tid("a08b10a4-ead9-7667-9116-add167624b57"), "web://x", [Activity("p", "t")]
    )
    wire = build_activity(ENDPOINTS, request)
    expected = (
        b'{"customerContext":{"baseTouchpointUri":"web://x"},'
        b'"activities":[{"propositionCode":"p","activityTypeCode":"t"}]}'
    )
    assert expected == wire.body
    assert ROOT + "/activity?tid=a08b10a4-ead9-7667-9116-add167624b57" == wire.url


def test_structure_request_matches_the_wire_sample() -> None:
    """The WIRE.md structure sample is reproduced byte for byte."""
    wire = build_structure(
        ENDPOINTS,
        Customer.by_key("alice@example.com"),
        "web://bank.com",
        "customerProfile",
        {"renewalDue": "true"},
    )
    expected = (
        b'{"customerContext":{"identifiers":[{"apiName":"customerkey","value":"alice@example.com"}],'
        b'"properties":[{"name":"renewalDue","value":"true"}],"baseTouchpointUri":"web://bank.com"},'
        b'"structureApiName":"customerProfile"}'
    )
    assert ("POST", ROOT + "/structure", expected) == (wire.method, wire.url, wire.body)


def test_delete_puts_both_identifiers_in_the_query() -> None:
    """DELETE {root}/ carries customerKey and tid as percent-encoded query parameters."""
    wire = build_delete(ENDPOINTS, Customer(tid="t-1", key="a&b=c d/é@x"))
    assert ("DELETE", None) == (wire.method, wire.body)
    assert ROOT + "/?customerKey=a%26b%3Dc%20d%2F%C3%A9%40x&tid=t-1" == wire.url


def test_identifiers_cannot_escape_the_path_or_query() -> None:
    """A TID with reserved characters stays one percent-encoded query value."""
    wire = build_activity(
        ENDPOINTS, ActivityRequest(Customer.by_tid("x/../?y=1#z"), "web://x", [Activity("p", "t")])
    )
    assert ROOT + "/activity?tid=x%2F..%2F%3Fy%3D1%23z" == wire.url


def test_site_key_and_version_are_path_segments() -> None:
    """The site key is percent-encoded as one path segment; a trailing slash on the base is dropped."""
    endpoints = Endpoints("https://na5.thunderhead.com/", "ONE/odd key", "2.0")
    assert (
        "https://na5.thunderhead.com/one/oauth2/rt/api/2.0/customer/ONE%2Fodd%20key"
        == endpoints.root
    )


def test_token_request_uses_form_encoded_basic_credentials() -> None:
    """Each credential is form-encoded before base64 (RFC 6749 §2.3.1)."""
    wire = build_token_request(ENDPOINTS.token_url, "my id", "s:e/c+r")
    decoded = base64.b64decode(wire.headers["Authorization"].removeprefix("Basic ")).decode()
    assert "my+id:s%3Ae%2Fc%2Br" == decoded
    assert (b"grant_type=client_credentials", "application/x-www-form-urlencoded") == (
        wire.body,
        wire.headers["Content-Type"],
    )
    assert "https://eu2.thunderhead.com/one/oauth2token" == wire.url


def test_token_request_repr_hides_credentials() -> None:
    """The Basic header never shows in a repr."""
    wire = build_token_request(ENDPOINTS.token_url, "id", "topsecret")
    assert "Basic" not in repr(wire) and "topsecret" not in repr(wire)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2018, 6, 2, 23, 6, 19, tzinfo=UTC), "2018-06-02T23:06:19Z"),
        (datetime(2018, 6, 2, 23, 6, 19, 250_000, tzinfo=UTC), "2018-06-02T23:06:19.250Z"),
        (datetime(2018, 6, 2, 23, 6, 19, 999, tzinfo=UTC), "2018-06-02T23:06:19Z"),
        (
            datetime(2018, 6, 3, 1, 6, 19, tzinfo=timezone(timedelta(hours=2))),
            "2018-06-02T23:06:19Z",
        ),
    ],
)
def test_timestamps_are_utc_with_z_and_optional_millis(moment: datetime, expected: str) -> None:
    """Timestamps are converted to UTC, suffixed Z, with milliseconds only when non-zero."""
    assert expected == format_timestamp(moment)


def test_parse_activity_reads_the_tid() -> None:
    """The activity response's tid is returned."""
    assert ActivityResult("t1") == parse_activity(b'{"statusCode": 200, "tid": "t1"}')


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"tid": 5}', b""])
def test_parse_activity_rejects_wrong_shapes(body: bytes) -> None:
    """Bodies that are not the documented object raise ResponseFormatError."""
    with pytest.raises(ResponseFormatError):
        parse_activity(body)


def test_parse_structure_returns_the_attributes() -> None:
    """A structure body is returned as the dict it is (no root node)."""
    assert {"tier": "gold", "offers": [{"code": "renew10"}]} == parse_structure(
        b'{"tier": "gold", "offers": [{"code": "renew10"}]}'
    )


@attrs.frozen
class Profile:
    tier: str
    offers: list[dict[str, str]]


def test_parse_structure_into_an_attrs_class() -> None:
    """``into=`` structures the body with cattrs."""
    assert Profile("gold", [{"code": "r"}]) == parse_structure(
        b'{"tier": "gold", "offers": [{"code": "r"}]}', Profile
    )


def test_parse_structure_into_wrong_shape_is_a_format_error() -> None:
    """A body that does not fit ``into`` raises ResponseFormatError."""
    with pytest.raises(ResponseFormatError):
        parse_structure(b'{"offers": 3}', Profile)


def test_parse_erasure_lists_tids_and_identifiers() -> None:
    """A 200 delete response becomes an Erasure with found=True."""
    body = b'{"tids": ["t1", "t2"], "identifiers": [{"apiName": "customerkey", "value": "a@x"}]}'
    assert Erasure(("t1", "t2"), (Identifier("customerkey", "a@x"),), True) == parse_erasure(
        200, body
    )


def test_parse_erasure_404_means_not_found() -> None:
    """A 404 delete means nothing was left to delete."""
    assert Erasure((), (), False) == parse_erasure(404, b"")


def test_parse_token_reads_token_and_lifetime() -> None:
    """access_token and expires_in are read; the token is not in the repr."""
    grant = parse_token(
        200, b'{"access_token": "tok-123", "token_type": "Bearer", "expires_in": 3600}'
    )
    assert ("tok-123", 3600.0) == (grant.access_token, grant.expires_in)
    assert "tok-123" not in repr(grant)


def test_parse_token_without_lifetime_leaves_it_unknown() -> None:
    """A missing expires_in is None (the manager assumes its default)."""
    assert None is parse_token(200, b'{"access_token": "t"}').expires_in


@pytest.mark.parametrize("status", [400, 401, 403])
def test_parse_token_refusal_is_an_authentication_error(status: int) -> None:
    """400/401/403 from the token endpoint raise AuthenticationError."""
    with pytest.raises(AuthenticationError, match="invalid_client"):
        parse_token(status, b'{"error": "invalid_client"}')


def test_parse_error_maps_status_and_message() -> None:
    """JSON error bodies give their errorMessage; the status picks the class."""
    error = parse_error(404, {}, b'{"statusCode": 404, "errorMessage": "no such structure"}', NOW)
    assert (NotFoundError, "no such structure") == (type(error), error.message)


def test_parse_error_keeps_a_short_excerpt_of_text_bodies() -> None:
    """A plain-text body is cut to a short, printable excerpt."""
    error = parse_error(502, {}, b"<html>\n" + b"x" * 5000, NOW)
    assert isinstance(error, ServerError)
    assert len(error.message) <= 201 and "\n" not in error.message


def test_parse_error_reads_retry_after_seconds() -> None:
    """Retry-After in delta-seconds becomes retry_after."""
    error = parse_error(429, {"Retry-After": "7"}, b"", NOW)
    assert (RateLimitedError, 7.0) == (type(error), error.retry_after)


def test_retry_after_http_date_is_relative_to_now() -> None:
    """An HTTP-date Retry-After is converted to seconds from ``now``."""
    assert 30.0 == parse_retry_after("Thu, 26 Nov 2026 12:00:30 GMT", NOW)


@pytest.mark.parametrize("value", [None, "soon", "", "nan"])
def test_retry_after_garbage_is_ignored(value: str | None) -> None:
    """Unparseable Retry-After values are treated as absent."""
    assert None is parse_retry_after(value, NOW)


def test_retry_after_in_the_past_is_zero() -> None:
    """A date already passed means no wait, never a negative one."""
    assert 0.0 == parse_retry_after("Thu, 26 Nov 2026 11:00:00 GMT", NOW)


def test_fast_body_matches_the_converter_reference() -> None:
    """The hand-built activity body equals the cattrs converter's rendering of the wire shapes."""
    from mxo_async._wire._shapes import (
        ActivityBody,
        CustomerContext,
        WireActivity,
        WireIdentifier,
        WireProperty,
        converter,
    )

    moment = datetime(2018, 6, 2, 23, 6, 19, 250_000, tzinfo=UTC)
    reference = ActivityBody(
        customer_context=CustomerContext(
            identifiers=(WireIdentifier("customerkey", "k@x"),),
            properties=(WireProperty("a", "1"), WireProperty("b", "2")),
            base_touchpoint_uri="web://x",
        ),
        activities=(
            WireActivity(proposition_code="p", activity_type_code="t", timestamp=moment),
            WireActivity(
                proposition_code="q", dynamic_proposition_code="d", activity_type_code="u"
            ),
        ),
    )
    request = ActivityRequest(
        Customer.by_key("k@x"),
        "web://x",
        [Activity("p", "t", timestamp=moment), Activity("q", "u", "d")],
        {"a": "1", "b": "2"},
    )
    assert orjson.dumps(converter.unstructure(reference)) == build_activity(ENDPOINTS, request).body


def test_fast_structure_body_matches_the_converter_reference() -> None:
    """The hand-built structure body equals the converter's rendering of the wire shapes."""
    from mxo_async._wire._shapes import CustomerContext, StructureBody, converter

    reference = StructureBody(
        customer_context=CustomerContext(base_touchpoint_uri="web://x"),
        structure_api_name="customerProfile",
    )
    wire = build_structure(ENDPOINTS, Customer.by_tid("t1"), "web://x", "customerProfile", {})
    assert orjson.dumps(converter.unstructure(reference)) == wire.body
