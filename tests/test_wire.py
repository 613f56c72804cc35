"""Requests built by the wire module follow the wire contract (docs/wire-contract.md); one module deciphers every response."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import orjson
import pytest

from mxo_async import (
    Activity,
    ActivityError,
    ActivityRequest,
    ActivityResult,
    APIStatusError,
    Customer,
    Device,
    Erasure,
    ForbiddenError,
    Identifier,
    NotFoundError,
    RateLimitedError,
    RejectedActivitiesError,
    ResponseFormatError,
    ServerError,
    Structure,
    UnauthorizedError,
    ValidationError,
)
from mxo_async._errors import AuthenticationError
from mxo_async._wire import (
    Endpoints,
    build_activity,
    build_delete,
    build_structure,
    build_token_request,
    decipher_activity,
    decipher_erasure,
    decipher_error,
    decipher_structure,
    decipher_token,
    format_timestamp,
    match_rejections,
    parse_retry_after,
)

ENDPOINTS = Endpoints("https://eu2.thunderhead.com", "ONE-LJBKEO4Y7J-5669")
ROOT = "https://eu2.thunderhead.com/one/oauth2/rt/api/3.1.0/customer/ONE-LJBKEO4Y7J-5669"
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
TID = "d290f1ee-6c54-4b01-90e6-d701748f0851"
NO_HEADERS: Mapping[str, str] = {}


def body_of(wire_body: bytes | None) -> Any:
    assert wire_body is not None
    return orjson.loads(wire_body)


# -- requests --------------------------------------------------------------------------------------


def test_activity_request_matches_the_wire_sample() -> None:
    """An activity request for a key carries it as an identifier under the key attribute."""
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
    assert "POST" == wire.method
    assert ROOT + "/activity" == wire.url
    assert expected == wire.body


def test_the_context_sample_of_wire_md_is_reproduced() -> None:
    """TID, two identifiers, a property and a device appear in the wire contract's order and names."""
    customer = Customer(TID, "alice@example.com", {"email": "alice@example.com"})
    device = Device("CustomerFirst", "SMARTPHONE", "IOS")
    request = ActivityRequest(
        customer, "web://bank.com", [Activity("p", "t")], {"campaigncode": "summer"}, device
    )
    context = body_of(build_activity(ENDPOINTS, request).body)["customerContext"]
    assert {
        "tid": TID,
        "identifiers": [
            {"apiName": "customerkey", "value": "alice@example.com"},
            {"apiName": "email", "value": "alice@example.com"},
        ],
        "properties": [{"name": "campaigncode", "value": "summer"}],
        "device": {"appName": "CustomerFirst", "devType": "SMARTPHONE", "osName": "IOS"},
        "baseTouchpointUri": "web://bank.com",
    } == context
    assert ["tid", "identifiers", "properties", "device", "baseTouchpointUri"] == list(context)


def test_the_tid_travels_in_the_body_not_the_query() -> None:
    """A customer known by TID: ``customerContext.tid`` and a URL without a query string."""
    request = ActivityRequest(Customer.by_tid(TID), "web://x", [Activity("p", "t")])
    wire = build_activity(ENDPOINTS, request)
    expected = (
        b'{"customerContext":{"tid":"' + TID.encode() + b'","baseTouchpointUri":"web://x"},'
        b'"activities":[{"propositionCode":"p","activityTypeCode":"t"}]}'
    )
    assert ROOT + "/activity" == wire.url
    assert expected == wire.body


def test_the_key_attribute_is_the_clients() -> None:
    """The key goes under the configured attribute API name (``email`` in the spec's example)."""
    endpoints = Endpoints("https://eu2.thunderhead.com", "SK", customer_key_attribute="email")
    wire = build_activity(
        endpoints, ActivityRequest(Customer.by_key("a@x"), "web://x", [Activity("p", "t")])
    )
    assert [{"apiName": "email", "value": "a@x"}] == body_of(wire.body)["customerContext"][
        "identifiers"
    ]


def test_an_identifier_equal_to_the_key_is_sent_once() -> None:
    """An identifier repeating the key under the key attribute is not sent twice."""
    customer = Customer(key="a@x", identifiers={"customerkey": "a@x", "crm": "42"})
    wire = build_activity(ENDPOINTS, ActivityRequest(customer, "web://x", [Activity("p", "t")]))
    assert [
        {"apiName": "customerkey", "value": "a@x"},
        {"apiName": "crm", "value": "42"},
    ] == body_of(wire.body)["customerContext"]["identifiers"]


def test_an_identifier_contradicting_the_key_is_a_validation_error() -> None:
    """Two values for the key attribute cannot both be sent: refused before any I/O."""
    customer = Customer(key="a@x", identifiers={"customerkey": "b@x"})
    with pytest.raises(ValidationError, match="customer key attribute"):
        build_activity(ENDPOINTS, ActivityRequest(customer, "web://x", [Activity("p", "t")]))


def test_every_device_field_has_its_wire_name() -> None:
    """A full Device renders with the spec's wire names, numbers as numbers, the time in UTC."""
    device = Device(
        "CustomerFirst",
        "TABLET",
        "ANDROID",
        app_version="1.0.2",
        manufacturer="Acme",
        model="T1",
        os_version="14",
        latitude=61.4,
        longitude=-32.7,
        location_updated=datetime(2017, 8, 24, 19, 57, 34, 479_000, tzinfo=UTC),
        location_accuracy=1.5,
        ip_address="127.0.0.1",
        locale="en-US",
        push_token="3220f35e",
    )
    request = ActivityRequest(Customer.by_tid(TID), "web://x", [Activity("p", "t")], device=device)
    assert {
        "appName": "CustomerFirst",
        "appVer": "1.0.2",
        "devMfr": "Acme",
        "devModel": "T1",
        "devType": "TABLET",
        "osName": "ANDROID",
        "osVer": "14",
        "locLatitude": 61.4,
        "locLongitude": -32.7,
        "locLastUpdated": "2017-08-24T19:57:34.479Z",
        "locHorzAccuracy": 1.5,
        "ipAddress": "127.0.0.1",
        "locale": "en-US",
        "pushToken": "3220f35e",
    } == body_of(build_activity(ENDPOINTS, request).body)["customerContext"]["device"]


def test_activity_headers_are_json() -> None:
    """Activity requests declare JSON in both directions."""
    wire = build_activity(
        ENDPOINTS, ActivityRequest(Customer.by_key("k"), "web://x", [Activity("p", "t")])
    )
    assert "application/json" == wire.headers["Content-Type"]
    assert "application/json" == wire.headers["Accept"]


def test_structure_request_matches_the_wire_sample() -> None:
    """The structure request names the structure beside the customer context."""
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
    assert "POST" == wire.method
    assert ROOT + "/structure" == wire.url
    assert expected == wire.body


def test_structure_request_carries_tid_and_device() -> None:
    """A structure request sends the TID and the device in its context too."""
    device = Device("App", "PERSONAL_COMPUTER", "LINUX")
    wire = build_structure(
        ENDPOINTS, Customer.by_tid(TID), "web://x", "customerProfile", {}, device
    )
    assert {
        "tid": TID,
        "device": {"appName": "App", "devType": "PERSONAL_COMPUTER", "osName": "LINUX"},
        "baseTouchpointUri": "web://x",
    } == body_of(wire.body)["customerContext"]


def test_delete_by_tid_sends_the_tid_in_a_json_body() -> None:
    """DELETE {root} (no trailing slash, no query) with ``{"tid": ...}``, declared as JSON."""
    wire = build_delete(ENDPOINTS, Customer.by_tid(TID))
    assert "DELETE" == wire.method
    assert ROOT == wire.url
    assert {"tid": TID} == body_of(wire.body)
    assert "application/json" == wire.headers["Content-Type"]


def test_delete_by_key_sends_one_identifier() -> None:
    """A customer known by key is deleted by ``{"identifier": {apiName, value}}``."""
    wire = build_delete(ENDPOINTS, Customer.by_key("a&b=c d/é@x"))
    assert {"identifier": {"apiName": "customerkey", "value": "a&b=c d/é@x"}} == body_of(wire.body)
    assert ROOT == wire.url


def test_delete_by_another_identifier_sends_it() -> None:
    """A customer known only by one identifier is deleted by that identifier."""
    wire = build_delete(ENDPOINTS, Customer.by_identifier("email", "a@x"))
    assert {"identifier": {"apiName": "email", "value": "a@x"}} == body_of(wire.body)


def test_delete_of_a_customer_known_both_ways_sends_the_tid() -> None:
    """With a TID and identifiers, the TID names the customer."""
    wire = build_delete(ENDPOINTS, Customer(TID, "a@x", {"email": "a@x"}))
    assert {"tid": TID} == body_of(wire.body)


def test_delete_with_several_identifiers_and_no_tid_is_refused() -> None:
    """Which identifier would decide what is erased: a ValidationError before any I/O."""
    with pytest.raises(ValidationError, match="2 identifiers"):
        build_delete(ENDPOINTS, Customer(key="a@x", identifiers={"email": "b@x"}))


def test_no_api_request_has_a_query_string() -> None:
    """Awkward identifiers stay in the body: every URL is the bare endpoint."""
    odd = Customer("x/../?y=1#z", "k?&=#", {"crm": "?a=b"})
    urls = {
        build_activity(ENDPOINTS, ActivityRequest(odd, "web://x", [Activity("p", "t")])).url,
        build_structure(ENDPOINTS, odd, "web://x", "s", {}).url,
        build_delete(ENDPOINTS, odd).url,
    }
    assert {ROOT + "/activity", ROOT + "/structure", ROOT} == urls


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
    assert b"grant_type=client_credentials" == wire.body
    assert "application/x-www-form-urlencoded" == wire.headers["Content-Type"]
    assert "https://eu2.thunderhead.com/one/oauth2token" == wire.url


def test_token_request_repr_hides_credentials() -> None:
    """The Basic header never shows in a repr."""
    wire = build_token_request(ENDPOINTS.token_url, "id", "topsecret")
    assert "Basic" not in repr(wire)
    assert "topsecret" not in repr(wire)


def test_request_repr_hides_the_body() -> None:
    """A request's repr never shows the body, which holds customer identifiers."""
    wire = build_delete(ENDPOINTS, Customer.by_key("alice@example.com"))
    assert "alice" not in repr(wire)


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


# -- send activity answers -------------------------------------------------------------------------


def test_an_activity_answer_gives_the_tid() -> None:
    """``{"tid", "errors": []}`` is an ActivityResult with no errors."""
    result = decipher_activity(200, NO_HEADERS, b'{"tid": "t1", "errors": []}', NOW)
    assert ActivityResult("t1") == result
    assert result.ok


def test_an_answer_without_errors_member_reads_as_all_processed() -> None:
    """A tolerant reader: a 200 without ``errors`` rejected nothing it names."""
    assert ActivityResult("t1") == decipher_activity(200, NO_HEADERS, b'{"tid": "t1"}', NOW)


def test_listed_errors_raise_rejected_activities_error() -> None:
    """A 200 listing errors raises RejectedActivitiesError with each code and echoed activity."""
    body = orjson.dumps(
        {
            "tid": "t1",
            "errors": [
                {
                    "errorCode": "INVALID_PROPOSITION_CODE",
                    "errorMessage": "The specified proposition code does not exist",
                    "activity": {"propositionCode": "nope", "activityTypeCode": "view"},
                }
            ],
        }
    )
    with pytest.raises(RejectedActivitiesError) as caught:
        decipher_activity(200, NO_HEADERS, body, NOW)
    expected = ActivityError(
        "INVALID_PROPOSITION_CODE",
        "The specified proposition code does not exist",
        Activity("nope", "view"),
    )
    assert (expected,) == caught.value.rejected
    assert "t1" == caught.value.result.tid
    assert "INVALID_PROPOSITION_CODE" in str(caught.value)


def test_an_unreadable_echo_leaves_the_activity_unknown() -> None:
    """An error whose echo is not an activity keeps its code; the activity is None."""
    body = b'{"tid": "t1", "errors": [{"errorCode": "GENERAL", "activity": 7}, "junk"]}'
    with pytest.raises(RejectedActivitiesError) as caught:
        decipher_activity(200, NO_HEADERS, body, NOW)
    assert (
        ActivityError("GENERAL", "", None),
        ActivityError("GENERAL", "unreadable error entry", None),
    ) == caught.value.rejected


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"tid": 5}', b"", b'{"errors": []}', b'{"tid": "t", "errors": 3}'],
)
def test_wrong_activity_answers_are_format_errors(body: bytes) -> None:
    """A 200 that is not the documented object raises ResponseFormatError."""
    with pytest.raises(ResponseFormatError):
        decipher_activity(200, NO_HEADERS, body, NOW)


def test_an_activity_error_status_keeps_the_error_code() -> None:
    """A 400 ``{errorCode, errorMessage}`` keeps the code on the exception."""
    body = b'{"errorCode": "INVALID_DATE_TIME", "errorMessage": "future dates are not supported"}'
    with pytest.raises(APIStatusError) as caught:
        decipher_activity(400, NO_HEADERS, body, NOW)
    assert "INVALID_DATE_TIME" == caught.value.code
    assert "future dates are not supported" == caught.value.message


def test_rejections_match_the_echoed_activity() -> None:
    """Each error is matched to the activity it echoes, wherever it stands in the request."""
    activities = [Activity("a", "view"), Activity("b", "view"), Activity("a", "click")]
    error = ActivityError("INVALID_PROPOSITION_CODE", "", Activity("b", "view"))
    assert {1: error} == match_rejections(activities, [error])


def test_identical_activities_are_matched_one_each() -> None:
    """Two errors echoing the same activity take two equal activities, in order."""
    activities = [Activity("a", "view"), Activity("a", "view"), Activity("c", "view")]
    errors = [ActivityError("GENERAL", "", Activity("a", "view"))] * 2
    assert [0, 1] == sorted(match_rejections(activities, errors))


def test_an_error_without_echo_falls_back_to_position() -> None:
    """An error that echoes nothing takes the first activity not matched otherwise."""
    activities = [Activity("a", "view"), Activity("b", "view")]
    named = ActivityError("GENERAL", "", Activity("a", "view"))
    anonymous = ActivityError("GENERAL", "", None)
    assert {0: named, 1: anonymous} == match_rejections(activities, [anonymous, named])


# -- structure answers -----------------------------------------------------------------------------


def test_the_structure_envelope_is_unwrapped() -> None:
    """``{structureApiName, tid, structure}`` becomes a Structure with the attributes."""
    body = (
        b'{"structureApiName": "customerProfile", "tid": "t1",'
        b' "structure": {"tier": "gold", "offers": [{"code": "renew10"}]}}'
    )
    assert Structure(
        "customerProfile", "t1", {"tier": "gold", "offers": [{"code": "renew10"}]}
    ) == decipher_structure(200, NO_HEADERS, body, NOW, "customerProfile")


def test_a_bare_structure_body_is_read_as_attributes() -> None:
    """A body without any envelope member is taken as the attributes (tolerant reader)."""
    assert Structure("customerProfile", None, {"tier": "gold"}) == decipher_structure(
        200, NO_HEADERS, b'{"tier": "gold"}', NOW, "customerProfile"
    )


def test_an_envelope_error_without_structure_is_a_failure() -> None:
    """A 200 carrying ``error`` and no ``structure`` raises with the error's code."""
    body = (
        b'{"structureApiName": "s", "error": {"errorCode": "INVALID_API_NAME",'
        b' "errorMessage": "unknown attribute", "structureApiName": "s"}}'
    )
    with pytest.raises(APIStatusError) as caught:
        decipher_structure(200, NO_HEADERS, body, NOW, "s")
    assert "INVALID_API_NAME" == caught.value.code
    assert "unknown attribute" == caught.value.message


def test_an_unknown_structure_is_not_found() -> None:
    """404 ``{errorCode, errorMessage, structureApiName}`` raises NotFoundError."""
    body = b'{"errorCode": "GENERAL", "errorMessage": "no such structure", "structureApiName": "s"}'
    with pytest.raises(NotFoundError, match="no such structure"):
        decipher_structure(404, NO_HEADERS, body, NOW, "s")


@attrs.frozen
class Profile:
    tier: str
    offers: list[dict[str, str]]


def test_structure_into_an_attrs_class() -> None:
    """``into=`` structures the attributes with cattrs."""
    body = b'{"structureApiName": "p", "tid": "t", "structure": {"tier": "gold", "offers": []}}'
    assert Structure("p", "t", Profile("gold", [])) == decipher_structure(
        200, NO_HEADERS, body, NOW, "p", Profile
    )


@pytest.mark.parametrize(
    "body", [b'{"structure": {"offers": 3}}', b'{"structure": [1]}', b'{"tid": 5, "structure": {}}']
)
def test_wrong_structure_shapes_are_format_errors(body: bytes) -> None:
    """Attributes that are not an object, or do not fit ``into``, raise ResponseFormatError."""
    with pytest.raises(ResponseFormatError):
        decipher_structure(200, NO_HEADERS, body, NOW, "p", Profile)


# -- delete answers --------------------------------------------------------------------------------


def test_an_erasure_lists_tids_and_identifiers() -> None:
    """A 200 delete answer becomes an Erasure with found=True."""
    body = b'{"tids": ["t1", "t2"], "identifiers": [{"apiName": "customerkey", "value": "a@x"}]}'
    assert Erasure(("t1", "t2"), (Identifier("customerkey", "a@x"),), True) == decipher_erasure(
        200, NO_HEADERS, body, NOW
    )


def test_customer_not_found_means_nothing_left_to_delete() -> None:
    """A 404 whose errorCode is CUSTOMER_NOT_FOUND is ``found=False``."""
    body = b'{"errorCode": "CUSTOMER_NOT_FOUND", "errorMessage": "Specified customer not found"}'
    assert Erasure((), (), False) == decipher_erasure(404, NO_HEADERS, body, NOW)


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>Not Found</html>", b'{"errorCode": "INVALID_SITEKEY", "errorMessage": "x"}'],
)
def test_any_other_404_is_not_found_error(body: bytes) -> None:
    """A 404 that does not say CUSTOMER_NOT_FOUND (wrong route, wrong site key) is an error."""
    with pytest.raises(NotFoundError):
        decipher_erasure(404, NO_HEADERS, body, NOW)


def test_a_delete_without_permission_is_forbidden() -> None:
    """403 raises ForbiddenError with the server's code."""
    body = b'{"errorCode": "GENERAL", "errorMessage": "User lacks permissions"}'
    with pytest.raises(ForbiddenError) as caught:
        decipher_erasure(403, NO_HEADERS, body, NOW)
    assert "GENERAL" == caught.value.code


# -- token answers ---------------------------------------------------------------------------------


def test_a_token_answer_gives_token_and_lifetime() -> None:
    """access_token and expires_in are read; the token is not in the repr."""
    grant = decipher_token(
        200,
        NO_HEADERS,
        b'{"access_token": "tok-123", "token_type": "Bearer", "expires_in": 3600}',
        NOW,
    )
    assert "tok-123" == grant.access_token
    assert 3600.0 == grant.expires_in
    assert "tok-123" not in repr(grant)


def test_a_token_without_lifetime_leaves_it_unknown() -> None:
    """A missing expires_in is None (the manager assumes its default)."""
    assert None is decipher_token(200, NO_HEADERS, b'{"access_token": "t"}', NOW).expires_in


@pytest.mark.parametrize("status", [400, 401, 403])
def test_a_token_refusal_is_an_authentication_error(status: int) -> None:
    """400/401/403 from the token endpoint raise AuthenticationError."""
    with pytest.raises(AuthenticationError, match="invalid_client"):
        decipher_token(status, NO_HEADERS, b'{"error": "invalid_client"}', NOW)


def test_a_token_endpoint_outage_is_a_server_error() -> None:
    """A 5xx from the token endpoint is a ServerError (retried by the token request)."""
    with pytest.raises(ServerError):
        decipher_token(502, NO_HEADERS, b"bad gateway", NOW)


# -- errors, all endpoints -------------------------------------------------------------------------


def test_an_error_keeps_status_class_message_and_code() -> None:
    """``{errorCode, errorMessage}`` gives the message and the code; the status picks the class."""
    error = decipher_error(
        404, NO_HEADERS, b'{"errorCode": "INVALID_SITEKEY", "errorMessage": "unknown"}', NOW
    )
    assert NotFoundError is type(error)
    assert "unknown" == error.message
    assert "INVALID_SITEKEY" == error.code
    assert "HTTP 404 INVALID_SITEKEY: unknown" == str(error)


def test_a_401_is_unauthorized() -> None:
    """A 401 (no documented body) is an UnauthorizedError without a code."""
    error = decipher_error(401, NO_HEADERS, b"", NOW)
    assert UnauthorizedError is type(error)
    assert None is error.code


def test_an_error_code_that_is_not_a_code_is_dropped() -> None:
    """Only upper-case code words are kept: anything else could be an echo."""
    error = decipher_error(400, NO_HEADERS, b'{"errorCode": "a@x.com", "errorMessage": "m"}', NOW)
    assert None is error.code


def test_an_error_keeps_a_short_excerpt_of_text_bodies() -> None:
    """A plain-text body is cut to a short, printable excerpt."""
    error = decipher_error(502, NO_HEADERS, b"<html>\n" + b"x" * 5000, NOW)
    assert ServerError is type(error)
    assert len(error.message) <= 201
    assert "\n" not in error.message


def test_an_error_reads_retry_after_seconds() -> None:
    """Retry-After in delta-seconds becomes retry_after."""
    error = decipher_error(429, {"Retry-After": "7"}, b"", NOW)
    assert RateLimitedError is type(error)
    assert 7.0 == error.retry_after


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


# -- hand-built bodies against the converter -------------------------------------------------------


def test_fast_body_matches_the_converter_reference() -> None:
    """The hand-built activity body equals the cattrs converter's rendering of the wire shapes."""
    from mxo_async._wire._shapes import (
        ActivityBody,
        CustomerContext,
        WireActivity,
        WireDevice,
        WireIdentifier,
        WireProperty,
        converter,
    )

    moment = datetime(2018, 6, 2, 23, 6, 19, 250_000, tzinfo=UTC)
    reference = ActivityBody(
        customer_context=CustomerContext(
            tid="t1",
            identifiers=(WireIdentifier("customerkey", "k@x"), WireIdentifier("crm", "9")),
            properties=(WireProperty("a", "1"), WireProperty("b", "2")),
            device=WireDevice(
                app_name="A", dev_type="WEARABLE", os_name="OTHER", loc_latitude=1.5, locale="fr"
            ),
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
        Customer("t1", "k@x", {"crm": "9"}),
        "web://x",
        [Activity("p", "t", timestamp=moment), Activity("q", "u", "d")],
        {"a": "1", "b": "2"},
        Device("A", "WEARABLE", "OTHER", latitude=1.5, locale="fr"),
    )
    assert orjson.dumps(converter.unstructure(reference)) == build_activity(ENDPOINTS, request).body


def test_fast_structure_body_matches_the_converter_reference() -> None:
    """The hand-built structure body equals the converter's rendering of the wire shapes."""
    from mxo_async._wire._shapes import CustomerContext, StructureBody, converter

    reference = StructureBody(
        customer_context=CustomerContext(tid="t1", base_touchpoint_uri="web://x"),
        structure_api_name="customerProfile",
    )
    wire = build_structure(ENDPOINTS, Customer.by_tid("t1"), "web://x", "customerProfile", {})
    assert orjson.dumps(converter.unstructure(reference)) == wire.body


def test_fast_delete_body_matches_the_converter_reference() -> None:
    """The hand-built delete body equals the converter's rendering of the wire shape."""
    from mxo_async._wire._shapes import DeleteBody, WireIdentifier, converter

    reference = DeleteBody(identifier=WireIdentifier("customerkey", "k@x"))
    assert orjson.dumps(converter.unstructure(reference)) == (
        build_delete(ENDPOINTS, Customer.by_key("k@x")).body
    )
