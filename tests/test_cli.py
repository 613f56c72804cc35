"""The mxo-async command line without a network: input mapping, dead letters, exit rules, help."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from mxo_async import (
    Activity,
    ActivityError,
    ActivityRequest,
    ActivityResult,
    AmbiguousDeliveryError,
    Customer,
    Device,
    ForbiddenError,
    MXOError,
    NotFoundError,
    RejectedActivitiesError,
    ServerError,
)
from mxo_async._input_records import (
    DEVICE_FIELDS,
    InputError,
    parse_activity_json,
    parse_customer_json,
    parse_customer_text,
)
from mxo_async._transport import RawResponse
from mxo_async._verdicts import describe_error, is_fatal
from mxo_async._wire import Endpoints, build_activity
from mxo_async.cli import cli
from mxo_async.cli._deadletter import DeadLetter
from mxo_async.cli._demo_data import (
    ACTIVITY_TYPES,
    PROPOSITIONS,
    demo_requests,
    erasure_customers,
)
from mxo_async.cli._inputs import CsvActivities, CsvCustomers, detect_format
from mxo_async.cli._lines import MAX_LINE_BYTES, Line, count_lines, iter_lines
from mxo_async.cli._progress import LatencyHistogram
from mxo_async.cli._status import ExitCode, Tally, exit_code
from mxo_async.cli._target import Target
from tests.fakes import FakeTransport, Sent, response

NOON = datetime(2024, 5, 1, 12, tzinfo=UTC)
NO_TARGET: dict[str, str | None] = {
    "MXO_BASE_URL": None,
    "MXO_SITE_KEY": None,
    "MXO_CLIENT_ID": None,
    "MXO_CLIENT_SECRET": None,
    "MXO_TOKEN_URL": None,
    "MXO_CUSTOMER_KEY_ATTRIBUTE": None,
    "MXO_API_VERSION": None,
    "COLUMNS": "200",
}
# A loopback target that nothing listens on: commands that never send can still build a client.
DEAD_TARGET = {
    **NO_TARGET,
    "MXO_BASE_URL": "http://127.0.0.1:9",
    "MXO_SITE_KEY": "ONE-TESTTEST01-0001",
    "MXO_CLIENT_ID": "id",
    "MXO_CLIENT_SECRET": "s3cr3t-value",
}


# -- NDJSON activities ----------------------------------------------------------------------------


def test_ndjson_line_with_one_activity_maps_every_field() -> None:
    """A one-activity NDJSON line becomes a request with the documented field mapping."""
    line = orjson.dumps({
        "customer_key": "alice@example.com", "tid": "t-1", "touchpoint": "web://bank.com",
        "proposition": "mortgage", "activity_type": "view", "dynamic_proposition": "fixed-5y",
        "timestamp": "2024-05-01T12:00:00Z", "properties": {"campaign": "summer"},
    }).decode()  # fmt: skip
    expected = ActivityRequest(
        Customer(tid="t-1", key="alice@example.com"),
        "web://bank.com",
        [Activity("mortgage", "view", "fixed-5y", NOON)],
        {"campaign": "summer"},
    )
    assert expected == parse_activity_json(line, None)


def test_ndjson_line_with_an_activities_list_keeps_their_order() -> None:
    """An ``activities`` list becomes one request with the activities in order."""
    line = (
        '{"tid": "t-1", "touchpoint": "atm://atm", "activities": ['
        '{"proposition": "atm", "activity_type": "withdrawal"},'
        '{"proposition": "atm", "activity_type": "balance_inquiry", "timestamp": "2024-05-01T14:00:00+02:00"}]}'
    )
    request = parse_activity_json(line, None)
    expected = (Activity("atm", "withdrawal"), Activity("atm", "balance_inquiry", None, NOON))
    assert expected == request.activities


def test_ndjson_line_without_touchpoint_uses_the_default() -> None:
    """``--touchpoint`` fills in a line that names no touchpoint."""
    request = parse_activity_json(
        '{"tid": "t", "proposition": "p", "activity_type": "a"}', "app://x"
    )
    assert "app://x" == request.touchpoint


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got an array"),
        ('{"proposition": "p", "activity_type": "a", "touchpoint": "w://x"}', "customer_key, tid or identifiers is required"),
        ('{"tid": "t", "activity_type": "a", "touchpoint": "w://x"}', "proposition is required"),
        ('{"tid": "t", "proposition": "p", "activity_type": "a"}', "touchpoint is required"),
        ('{"tid": "t", "proposition": "p", "activity_type": "a", "touchpoint": "w://x", "activityType": "b"}', "unknown field(s): activityType"),
        ('{"tid": "t", "proposition": "p", "activity_type": "a", "touchpoint": "w://x", "timestamp": "2024-05-01T12:00:00"}', "needs a time zone"),
        ('{"tid": "t", "proposition": "p", "activity_type": "a", "touchpoint": "w://x", "timestamp": "yesterday"}', "not an RFC 3339"),
        ('{"tid": "t", "proposition": "p", "activity_type": "a", "touchpoint": "w://x", "properties": {"n": 1}}', "properties.n: must be a string"),
        ('{"tid": "t", "proposition": "p", "activity_type": "a", "touchpoint": "nowhere"}', "touchpoint"),
        ('{"tid": "t", "touchpoint": "w://x", "activities": []}', "non-empty array"),
        ('{"tid": "t", "touchpoint": "w://x", "activities": [{"proposition": "p", "activity_type": "a", "x": 1}]}', "activities[0].unknown field(s): x"),
    ],
)  # fmt: skip
def test_bad_ndjson_line_is_rejected_with_its_reason(line: str, reason: str) -> None:
    """Each kind of bad NDJSON line raises InputError naming what is wrong."""
    with pytest.raises(InputError) as caught:
        parse_activity_json(line, None)
    assert reason in str(caught.value)


def test_future_timestamp_is_rejected() -> None:
    """A timestamp in the future fails the model's validation and becomes an input error."""
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    line = f'{{"tid": "t", "proposition": "p", "activity_type": "a", "touchpoint": "w://x", "timestamp": "{future}"}}'
    with pytest.raises(InputError, match="future"):
        parse_activity_json(line, None)


PHONE = Device("BankApp", "SMARTPHONE", "IOS", app_version="7.1", latitude=51.5)


def test_ndjson_identifiers_join_the_customer() -> None:
    """``identifiers`` maps attribute API names to values on the request's customer."""
    request = parse_activity_json(
        '{"customer_key": "k", "identifiers": {"email": "a@example.com"}, "proposition": "p",'
        ' "activity_type": "a", "touchpoint": "w://x"}',
        None,
    )
    assert Customer(key="k", identifiers={"email": "a@example.com"}) == request.customer


def test_ndjson_identifiers_alone_name_the_customer() -> None:
    """A line with only ``identifiers`` (no key, no TID) is a valid customer."""
    request = parse_activity_json(
        '{"identifiers": {"email": "a@example.com"}, "proposition": "p", "activity_type": "a",'
        ' "touchpoint": "w://x"}',
        None,
    )
    assert Customer.by_identifier("email", "a@example.com") == request.customer


def test_ndjson_device_takes_the_wire_names() -> None:
    """``device`` with the wire names (appName, devType, ...) becomes the request's Device."""
    line = orjson.dumps({
        "tid": "t", "proposition": "p", "activity_type": "a", "touchpoint": "w://x",
        "device": {"appName": "BankApp", "devType": "SMARTPHONE", "osName": "IOS",
                   "appVer": "7.1", "locLatitude": 51.5},
    }).decode()  # fmt: skip
    assert PHONE == parse_activity_json(line, None).device


def test_ndjson_device_takes_the_field_names() -> None:
    """``device`` with the Device field names (app_name, dev_type, ...) gives the same Device."""
    line = orjson.dumps({
        "tid": "t", "proposition": "p", "activity_type": "a", "touchpoint": "w://x",
        "device": {"app_name": "BankApp", "dev_type": "SMARTPHONE", "os_name": "IOS",
                   "app_version": "7.1", "latitude": 51.5},
    }).decode()  # fmt: skip
    assert PHONE == parse_activity_json(line, None).device


def test_ndjson_device_location_time_is_read() -> None:
    """``locLastUpdated`` is an RFC 3339 date-time with a zone."""
    line = orjson.dumps({
        "tid": "t", "proposition": "p", "activity_type": "a", "touchpoint": "w://x",
        "device": {"appName": "A", "devType": "TABLET", "osName": "ANDROID",
                   "locLastUpdated": "2024-05-01T12:00:00Z"},
    }).decode()  # fmt: skip
    device = parse_activity_json(line, None).device
    assert NOON == (device.location_updated if device is not None else None)


def test_key_attribute_lets_identifiers_repeat_the_key() -> None:
    """An identifier under the key attribute with the key's value is accepted."""
    request = parse_activity_json(
        '{"customer_key": "k", "identifiers": {"email": "k"}, "proposition": "p",'
        ' "activity_type": "a", "touchpoint": "w://x"}',
        None,
        "email",
    )
    assert Customer(key="k", identifiers={"email": "k"}) == request.customer


_LINE = '{{"tid": "t", "proposition": "p", "activity_type": "a", "touchpoint": "w://x", {}}}'


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ('"identifiers": ["email"]', "identifiers: must be an object"),
        ('"identifiers": {"email": 5}', "identifiers.email: must be a string"),
        ('"identifiers": {"e mail": "x"}', "no spaces"),
        ('"customer_key": "k", "identifiers": {"customerkey": "other"}', "differs from customer.key"),
        ('"device": "phone"', "device: must be an object"),
        ('"device": {}', "device: must not be empty"),
        ('"device": {"appName": "A", "devType": "SMARTPHONE"}', "device: osName is required"),
        ('"device": {"appName": "A", "app_name": "A", "devType": "TABLET", "osName": "IOS"}', "app_name is given twice"),
        ('"device": {"appName": "A", "devType": "TABLET", "osName": "IOS", "colour": "red"}', "device: unknown field(s): colour"),
        ('"device": {"appName": "A", "devType": "PHONE", "osName": "IOS"}', "device.devType: must be one of"),
        ('"device": {"appName": "A", "devType": "TABLET", "osName": "IOS", "locLatitude": "north"}', "device.locLatitude: must be a number"),
        ('"device": {"appName": "A", "devType": "TABLET", "osName": "IOS", "locLatitude": true}', "device.locLatitude: must be a number"),
        ('"device": {"appName": "A", "devType": "TABLET", "osName": "IOS", "locLatitude": 95}', "device.locLatitude: must be between"),
        ('"device": {"appName": 7, "devType": "TABLET", "osName": "IOS"}', "device.appName: must be a string"),
        ('"device": {"appName": "A", "devType": "TABLET", "osName": "IOS", "locLastUpdated": "2024-05-01"}', "device.locLastUpdated: needs a time zone"),
    ],
)  # fmt: skip
def test_bad_identifiers_or_device_are_rejected_with_their_reason(extra: str, reason: str) -> None:
    """Each kind of bad ``identifiers`` or ``device`` raises InputError naming what is wrong."""
    with pytest.raises(InputError) as caught:
        parse_activity_json(_LINE.format(extra), None)
    assert reason in str(caught.value)


def test_device_wire_names_are_those_sent() -> None:
    """The device names the input accepts are the names the wire module sends."""
    full = Device(
        "A", "TABLET", "IOS", "1", "Acme", "X1", "17", 1.0, 2.0, NOON, 3.0, "10.0.0.1", "en", "p"
    )
    request = ActivityRequest(Customer(tid="t"), "w://x", [Activity("p", "a")], device=full)
    body = orjson.loads(build_activity(Endpoints("https://h", "ONE-X-1"), request).body or b"")
    assert set(DEVICE_FIELDS.values()) == set(body["customerContext"]["device"])


# -- CSV activities -------------------------------------------------------------------------------


def test_csv_row_maps_columns_and_property_columns() -> None:
    """CSV columns map like the NDJSON keys; ``prop.<name>`` columns become properties."""
    parser = CsvActivities(
        "customer_key,tid,touchpoint,proposition,activity_type,dynamic_proposition,timestamp,prop.campaign,prop.empty",
        None,
    )
    request = parser.parse(
        '"carol, the ""third""",,web://bank.com,savings,open,easy,2024-05-01T12:00:00Z,summer,'
    )
    expected = ActivityRequest(
        Customer(key='carol, the "third"'),
        "web://bank.com",
        [Activity("savings", "open", "easy", NOON)],
        {"campaign": "summer"},
    )
    assert expected == request


def test_csv_header_with_unknown_column_is_refused() -> None:
    """An unknown CSV column makes the whole file unusable (it would be dropped silently)."""
    with pytest.raises(InputError, match="unknown CSV column"):
        CsvActivities("customer_key,proposition,activity_type,activityType", "w://x")


def test_csv_header_without_touchpoint_needs_the_option() -> None:
    """Without a touchpoint column, ``--touchpoint`` is required."""
    with pytest.raises(InputError, match="--touchpoint"):
        CsvActivities("customer_key,proposition,activity_type", None)


def test_csv_row_with_wrong_cell_count_is_rejected() -> None:
    """A row whose cells do not match the header is an input error."""
    parser = CsvActivities("customer_key,proposition,activity_type", "w://x")
    with pytest.raises(InputError, match="expected 3 cells, got 2"):
        parser.parse("alice,p")


def test_csv_identifier_and_device_columns() -> None:
    """``id.<apiName>`` columns become identifiers and ``device.<field>`` columns the Device."""
    parser = CsvActivities(
        "tid,id.email,proposition,activity_type,device.appName,device.dev_type,device.osName,"
        "device.appVer,device.locLatitude",
        "w://x",
    )
    request = parser.parse("t-1,a@example.com,p,a,BankApp,SMARTPHONE,IOS,7.1,51.5")
    assert Customer(tid="t-1", identifiers={"email": "a@example.com"}) == request.customer
    assert PHONE == request.device


def test_csv_row_with_empty_device_cells_has_no_device() -> None:
    """A row whose device cells are all empty carries no device."""
    parser = CsvActivities("tid,proposition,activity_type,device.appName,device.devType", "w://x")
    assert None is parser.parse("t,p,a,,").device


def test_csv_row_with_part_of_a_device_is_rejected() -> None:
    """A row with some device cells but not the required ones is an input error."""
    parser = CsvActivities("tid,proposition,activity_type,device.appName,device.devType", "w://x")
    with pytest.raises(InputError, match="device: osName is required"):
        parser.parse("t,p,a,BankApp,TABLET")


def test_csv_identifiers_alone_name_the_customer() -> None:
    """A CSV with ``id.<apiName>`` and no customer_key or tid column is accepted."""
    parser = CsvActivities("id.email,proposition,activity_type", "w://x")
    assert Customer.by_identifier("email", "a@x.com") == parser.parse("a@x.com,p,a").customer


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("tid,proposition,activity_type,device.colour", "unknown CSV column(s): device.colour"),
        ("tid,proposition,activity_type,id.", "unknown CSV column(s): id."),
        ("proposition,activity_type", "'customer_key', 'tid' or 'id.<apiName>'"),
    ],
)
def test_csv_header_with_bad_identifier_or_device_column_is_refused(
    header: str, reason: str
) -> None:
    """An unknown device column, an empty identifier name or no customer column is refused."""
    with pytest.raises(InputError) as caught:
        CsvActivities(header, "w://x")
    assert reason in str(caught.value)


# -- customers ------------------------------------------------------------------------------------


def test_plain_text_customer_lines() -> None:
    """Plain text: a key per line, ``tid:`` for a TID, ``#`` comments skipped."""
    parsed = [parse_customer_text(t) for t in ("alice@example.com", "tid: t-9", "# note", "  ")]
    assert [Customer(key="alice@example.com"), Customer(tid="t-9"), None, None] == parsed


def test_ndjson_customer_line() -> None:
    """NDJSON customers take ``customer_key`` and ``tid``."""
    assert Customer(tid="t", key="k") == parse_customer_json('{"customer_key": "k", "tid": "t"}')


def test_csv_customers_ignore_other_columns() -> None:
    """A CSV of customers may carry other columns; only customer_key and tid are read."""
    parser = CsvCustomers("name,customer_key,tid")
    assert Customer(key="bob@example.com") == parser.parse("Bob,bob@example.com,")


def test_ndjson_customer_with_identifiers() -> None:
    """NDJSON customers take ``identifiers`` too."""
    expected = Customer.by_identifier("email", "a@example.com")
    assert expected == parse_customer_json('{"identifiers": {"email": "a@example.com"}}')


def test_customer_with_a_tid_may_have_several_identifiers() -> None:
    """A customer with a TID is deleted by its TID, whatever identifiers it also has."""
    line = '{"tid": "t", "customer_key": "k", "identifiers": {"email": "e"}}'
    assert Customer("t", "k", {"email": "e"}) == parse_customer_json(line)


def test_customer_no_delete_can_name_is_invalid() -> None:
    """Without a TID, a customer with a key and another identifier cannot be erased."""
    with pytest.raises(InputError, match="one customer by its TID or by one identifier"):
        parse_customer_json('{"customer_key": "k", "identifiers": {"email": "e"}}')


def test_csv_customers_read_identifier_columns() -> None:
    """A CSV of customers may name them by ``id.<apiName>`` columns."""
    parser = CsvCustomers("name,id.email")
    assert Customer.by_identifier("email", "bob@example.com") == parser.parse("Bob,bob@example.com")


def test_csv_customers_ignore_duplicate_other_columns() -> None:
    """Columns that are not read may repeat in a CSV of customers."""
    parser = CsvCustomers("note,customer_key,note")
    assert Customer(key="k") == parser.parse("a,k,b")


@pytest.mark.parametrize(
    ("path", "explicit", "expected"),
    [("a.ndjson", None, "ndjson"), ("a.JSONL", None, "ndjson"), ("a.csv", None, "csv"),
     ("-", None, "ndjson"), ("a.txt", "csv", "csv")],
)  # fmt: skip
def test_format_detection(path: str, explicit: str | None, expected: str) -> None:
    """The format comes from --format, else the extension, else the stdin default."""
    assert expected == detect_format(path, explicit, ("ndjson", "csv"), stdin="ndjson")


def test_unknown_extension_asks_for_format() -> None:
    """An extension that says nothing is an error that names --format."""
    with pytest.raises(InputError, match="--format"):
        detect_format("data.bin", None, ("ndjson", "csv"), stdin="ndjson")


# -- reading lines --------------------------------------------------------------------------------


def _reader(*chunks: bytes) -> Callable[[], Awaitable[bytes]]:
    pending = list(chunks)

    async def read() -> bytes:
        return pending.pop(0) if pending else b""

    return read


async def _collect(lines: AsyncIterator[Line]) -> list[Line]:
    return [line async for line in lines]


async def test_lines_split_across_chunks_and_crlf() -> None:
    """Lines split over chunk boundaries, CRLF endings, a BOM and a last unterminated line."""
    read = _reader(b"\xef\xbb\xbfone\r\ntw", b"o\n\nthr", b"ee")
    expected = [Line(1, "one"), Line(2, "two"), Line(3, ""), Line(4, "three")]
    assert expected == await _collect(iter_lines(read))


async def test_invalid_utf8_line_is_flagged() -> None:
    """A line that is not UTF-8 carries an error instead of failing the whole input."""
    lines = await _collect(iter_lines(_reader(b"ok\n\xff\xfe\n")))
    assert 2 == lines[1].number
    assert "not valid UTF-8 (invalid start byte)" == lines[1].error


async def test_overlong_line_is_flagged_and_numbering_continues() -> None:
    """A line over the limit is reported once; the next line keeps its number."""
    chunks = [b"x" * 65536] * (MAX_LINE_BYTES // 65536 + 2) + [b"\nnext\n"]
    lines = await _collect(iter_lines(_reader(*chunks)))
    too_long = f"line is longer than {MAX_LINE_BYTES} bytes"
    assert [(1, too_long), (2, None)] == [(line.number, line.error) for line in lines]


def test_count_lines_counts_an_unterminated_last_line(tmp_path: os.PathLike[str]) -> None:
    """The progress total counts a last line without a line break."""
    path = os.path.join(tmp_path, "a.ndjson")
    with open(path, "wb") as file:
        file.write(b"a\nb\nc")
    assert 3 == count_lines(path)


# -- dead letter, tallies, exit status ------------------------------------------------------------


def test_dead_letter_record_holds_line_reason_and_input(tmp_path: os.PathLike[str]) -> None:
    """Each dead-letter record keeps the line number, the reason, the error and the input."""
    path = os.path.join(tmp_path, "dead.ndjson")
    with DeadLetter(path) as dead:
        dead.write(Line(7, "not json"), "invalid", "invalid JSON")
    with open(path, "rb") as file:
        record = orjson.loads(file.readline())
    del record["time"]
    assert {"line": 7, "reason": "invalid", "error": "invalid JSON", "input": "not json"} == record


def test_dead_letter_file_is_private(tmp_path: os.PathLike[str]) -> None:
    """The dead-letter file holds customer keys, so only its owner may read it."""
    path = os.path.join(tmp_path, "dead.ndjson")
    with DeadLetter(path) as dead:
        dead.write(Line(1, "x"), "invalid", "bad")
    assert 0o600 == stat.S_IMODE(os.stat(path).st_mode)


def test_dead_letter_file_is_not_created_when_nothing_fails(tmp_path: os.PathLike[str]) -> None:
    """No dead-letter file appears after a clean run."""
    path = os.path.join(tmp_path, "dead.ndjson")
    with DeadLetter(path):
        pass
    assert not os.path.exists(path)


@pytest.mark.parametrize(
    ("errors", "invalid", "expected"),
    [
        ([None, None], 0, ExitCode.OK),
        ([None, ServerError(500, "boom")], 0, ExitCode.NOT_DELIVERED),
        ([None, AmbiguousDeliveryError("reset")], 0, ExitCode.NOT_DELIVERED),
        ([None], 1, ExitCode.NOT_DELIVERED),
    ],
)
def test_exit_status_is_zero_only_when_everything_was_delivered(
    errors: list[MXOError | None], invalid: int, expected: ExitCode
) -> None:
    """Failed, ambiguous or invalid items make the exit status 1."""
    tally = Tally()
    for error in errors:
        tally.add(error, 1)
    for _ in range(invalid):
        tally.add_invalid()
    assert expected == exit_code(tally)


def test_ambiguous_and_failed_are_counted_apart() -> None:
    """The tally keeps ambiguous (maybe stored) apart from failed (not stored), in activities."""
    tally = Tally()
    tally.add(AmbiguousDeliveryError("reset"), 3)
    tally.add(ServerError(500, "boom"), 2)
    tally.add(None, 4)
    assert 4 == tally.activities_delivered
    assert 2 == tally.activities_failed
    assert 3 == tally.activities_ambiguous


def rejection(count: int) -> RejectedActivitiesError:
    errors = tuple(ActivityError("INVALID_PROPOSITION_CODE", "unknown", None) for _ in range(count))
    return RejectedActivitiesError(ActivityResult("tid-1", errors))


def test_rejected_activities_are_counted_apart_from_the_stored_ones() -> None:
    """A request with 1 of 3 activities rejected counts 1 rejected and 2 delivered activities."""
    tally = Tally()
    tally.add(rejection(1), 3)
    assert 1 == tally.rejected
    assert 1 == tally.activities_rejected
    assert 2 == tally.activities_delivered
    assert 0 == tally.delivered


def test_rejected_count_given_by_the_caller_wins() -> None:
    """The caller's count of matched rejections replaces the length of the error's list."""
    tally = Tally()
    tally.add(rejection(3), 4, rejected=2)
    assert 2 == tally.activities_rejected
    assert 2 == tally.activities_delivered


def test_a_rejected_activity_makes_the_exit_status_1() -> None:
    """One rejected activity means not everything was delivered."""
    tally = Tally()
    tally.add(None, 5)
    tally.add(rejection(1), 1)
    assert ExitCode.NOT_DELIVERED == exit_code(tally)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NotFoundError(404, "unknown site", code="INVALID_SITEKEY"), True),
        (ForbiddenError(403, "not allowed"), True),
        (NotFoundError(404, "no such structure"), False),
        (ServerError(500, "boom"), False),
        (rejection(1), False),
    ],
)
def test_errors_every_item_would_hit_are_fatal(error: Exception, expected: bool) -> None:
    """An unknown site key and a 403 stop the run; per-item errors do not."""
    assert expected == is_fatal(error)


def test_error_description_masks_the_customer_identifiers() -> None:
    """An error message that repeats an identifier value shows it masked."""
    customer = Customer.by_identifier("email", "alice@example.com")
    text = describe_error(ServerError(500, "no such alice@example.com"), customer)
    assert "ServerError: HTTP 500: no such a***m" == text


def test_rejected_dead_letter_record_holds_code_and_activity(tmp_path: os.PathLike[str]) -> None:
    """A rejected record carries the errorCode and the activity's index besides the usual fields."""
    path = os.path.join(tmp_path, "dead.ndjson")
    with DeadLetter(path) as dead:
        dead.write(Line(3, "{}"), "rejected", "unknown code", code="INVALID_PROPOSITION_CODE",
                   activity=1)  # fmt: skip
    with open(path, "rb") as file:
        record = orjson.loads(file.readline())
    del record["time"]
    assert {
        "line": 3,
        "reason": "rejected",
        "code": "INVALID_PROPOSITION_CODE",
        "activity": 1,
        "error": "unknown code",
        "input": "{}",
    } == record


def test_error_description_masks_the_customer_key() -> None:
    """An error message that repeats the customer key shows it masked."""
    customer = Customer.by_key("alice@example.com")
    text = describe_error(ServerError(500, "no such alice@example.com"), customer)
    assert "ServerError: HTTP 500: no such a***m" == text


def test_target_repr_hides_the_secret() -> None:
    """The global options never show the client secret."""
    assert "s3cr3t" not in repr(Target(client_secret="s3cr3t"))


def test_target_key_attribute_comes_from_the_environment() -> None:
    """Without the option, the key attribute is MXO_CUSTOMER_KEY_ATTRIBUTE."""
    assert "email" == Target().key_attribute({"MXO_CUSTOMER_KEY_ATTRIBUTE": "email"})


def test_target_key_attribute_option_wins_over_the_environment() -> None:
    """The option overrides MXO_CUSTOMER_KEY_ATTRIBUTE."""
    target = Target(customer_key_attribute="crmid")
    assert "crmid" == target.key_attribute({"MXO_CUSTOMER_KEY_ATTRIBUTE": "email"})


def test_target_key_attribute_defaults_to_customerkey() -> None:
    """With neither option nor variable the key attribute is customerkey."""
    assert "customerkey" == Target().key_attribute({})


async def test_target_key_attribute_reaches_the_client() -> None:
    """The client built from the target uses its key attribute."""
    env = {k: v for k, v in DEAD_TARGET.items() if v is not None}
    async with Target(customer_key_attribute="email").client(env) as client:
        assert "email" == client.target["customer_key_attribute"]


def test_latency_percentiles_are_within_two_percent() -> None:
    """The histogram's percentiles are within 2% of the exact ones."""
    histogram = LatencyHistogram()
    for n in range(1, 1001):
        histogram.add(n / 1000)
    results = [histogram.percentile(q) for q in (50, 90, 99)]
    assert pytest.approx([0.5, 0.9, 0.99], rel=0.02) == results


# -- demo traffic ---------------------------------------------------------------------------------


def test_demo_traffic_has_k_activities_per_customer_in_the_past() -> None:
    """Demo traffic: exactly K activities per customer, all within the last 30 days."""
    now = datetime.now(UTC)
    requests = list(demo_requests(20, 7, seed=3, now=now))
    per_customer: dict[str | None, int] = {}
    for request in requests:
        per_customer[request.customer.key] = per_customer.get(request.customer.key, 0) + len(
            request.activities
        )
    moments = [a.timestamp for r in requests for a in r.activities]
    assert {7} == set(per_customer.values())
    assert all(now - timedelta(days=30) <= m <= now for m in moments if m is not None)


def test_demo_traffic_is_reproducible() -> None:
    """The same seed gives the same traffic."""
    assert list(demo_requests(5, 3, 9, NOON)) == list(demo_requests(5, 3, 9, NOON))


def test_demo_erases_every_tenth_customer() -> None:
    """The demo erases 10% of its customers."""
    assert 20 == len(list(erasure_customers(200, seed=1)))


def test_demo_catalogue_knows_every_code_the_demo_sends() -> None:
    """The demo's emulated catalogue holds every proposition and activity type of its traffic."""
    sent = [a for r in demo_requests(300, 5, seed=2, now=NOON) for a in r.activities]
    propositions = {a.proposition for a in sent}
    activity_types = {a.activity_type for a in sent}
    unknown = (propositions - PROPOSITIONS) | (activity_types - ACTIVITY_TYPES)
    assert set() == unknown


# -- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ([], ["--base-url", "--site-key", "--client-id", "--client-secret", "--token-url", "--verbose"]),
        (["demo"], ["--customers", "--activities-per-customer", "--concurrency", "--faults", "--seed", "--at-least-once", "--adaptive", "--emulator", "--key-attribute"]),
        (["send"], ["--touchpoint", "--concurrency", "--coalesce", "--dead-letter", "--format", "--at-least-once", "--key-attribute"]),
        (["erase"], ["--journal", "--report", "--concurrency", "--dead-letter", "--format", "--key-attribute"]),
        (["structure"], ["--key", "--tid", "--identifier", "--touchpoint", "--prop", "--pretty", "--key-attribute"]),
        (["emulator"], ["--host", "--port", "--client-id", "--client-secret", "--site-key", "--token-ttl", "--faults", "--seed"]),
    ],
)  # fmt: skip
def test_help_mentions_every_option(command: list[str], options: list[str]) -> None:
    """``--help`` of each command documents each of its options."""
    result = CliRunner().invoke(cli, [*command, "--help"], env=NO_TARGET)
    assert 0 == result.exit_code
    assert [] == [o for o in options if o not in result.output]


def test_missing_target_is_a_usage_error_naming_the_variable(tmp_path: os.PathLike[str]) -> None:
    """``send`` without MXO_BASE_URL exits 2 and says which variable to set."""
    path = os.path.join(tmp_path, "a.ndjson")
    with open(path, "w") as file:
        file.write("{}\n")
    result = CliRunner().invoke(cli, ["send", path], env=NO_TARGET)
    assert 2 == result.exit_code
    assert "MXO_BASE_URL" in result.stderr


def test_usage_error_never_echoes_the_secret(tmp_path: os.PathLike[str]) -> None:
    """A usage error after --client-secret does not print the secret."""
    result = CliRunner().invoke(
        cli, ["--client-secret", "s3cr3t-value", "structure", "x", "--touchpoint", "w://x"],
        env=NO_TARGET,
    )  # fmt: skip
    assert 2 == result.exit_code
    assert "s3cr3t" not in result.output


def test_structure_needs_a_customer() -> None:
    """``structure`` without --key or --tid is a usage error."""
    result = CliRunner().invoke(cli, ["structure", "p", "--touchpoint", "w://x"], env=DEAD_TARGET)
    assert 2 == result.exit_code
    assert "--key" in result.stderr


def test_bad_fault_spec_is_a_usage_error() -> None:
    """A malformed --faults spec exits 2 before anything starts."""
    result = CliRunner().invoke(cli, ["demo", "--faults", "nonsense=1"], env=NO_TARGET)
    assert 2 == result.exit_code


def test_bad_csv_header_is_a_usage_error(tmp_path: os.PathLike[str]) -> None:
    """A CSV header with an unknown column stops ``send`` with status 2 before sending."""
    path = os.path.join(tmp_path, "a.csv")
    with open(path, "w") as file:
        file.write("customer_key,proposition,activity_type,colour\nk,p,a,red\n")
    result = CliRunner().invoke(cli, ["send", path, "--touchpoint", "w://x"], env=DEAD_TARGET)
    assert 2 == result.exit_code
    assert "colour" in result.stderr


def test_file_of_invalid_lines_is_dead_lettered(tmp_path: os.PathLike[str]) -> None:
    """Every unusable line reaches the dead-letter file with its line number; exit status 1."""
    path = os.path.join(tmp_path, "a.ndjson")
    dead = os.path.join(tmp_path, "dead.ndjson")
    with open(path, "w") as file:
        file.write('not json\n\n{"tid": "t", "proposition": "p"}\n')
    result = CliRunner().invoke(
        cli, ["send", path, "--touchpoint", "w://x", "--dead-letter", dead], env=DEAD_TARGET
    )
    with open(dead, "rb") as file:
        records = [orjson.loads(line) for line in file]
    assert 1 == result.exit_code
    assert [(1, "invalid"), (3, "invalid")] == [(r["line"], r["reason"]) for r in records]


def test_empty_key_attribute_is_a_usage_error(tmp_path: os.PathLike[str]) -> None:
    """``--key-attribute ''`` exits 2 before anything is read."""
    path = os.path.join(tmp_path, "a.ndjson")
    with open(path, "w") as file:
        file.write("{}\n")
    result = CliRunner().invoke(cli, ["send", path, "--key-attribute", " "], env=DEAD_TARGET)
    assert 2 == result.exit_code
    assert "--key-attribute" in result.stderr


def test_key_attribute_with_a_space_is_a_usage_error(tmp_path: os.PathLike[str]) -> None:
    """A key attribute that cannot be an API name is refused by the client: exit 2."""
    path = os.path.join(tmp_path, "a.ndjson")
    with open(path, "w") as file:
        file.write("{}\n")
    result = CliRunner().invoke(cli, ["send", path, "--key-attribute", "e mail"], env=DEAD_TARGET)
    assert 2 == result.exit_code
    assert "customer_key_attribute" in result.stderr


def test_structure_identifier_needs_name_and_value() -> None:
    """``--identifier`` without ``=`` is a usage error naming the option."""
    result = CliRunner().invoke(
        cli, ["structure", "p", "--touchpoint", "w://x", "--identifier", "email"], env=DEAD_TARGET
    )
    assert 2 == result.exit_code
    assert "--identifier" in result.stderr


# -- commands against a recording transport: what reaches the wire --------------------------------


def rejecting(sent: Sent) -> RawResponse:
    """Answer an activity request as MXO does, rejecting activities whose proposition is 'nope'."""
    body = orjson.loads(sent.body or b"{}")
    errors = [
        {"errorCode": "INVALID_PROPOSITION_CODE", "errorMessage": "unknown proposition",
         "activity": activity}
        for activity in body.get("activities", [])
        if activity["propositionCode"] == "nope"
    ]  # fmt: skip
    return response(200, {"tid": "tid-1", "errors": errors})


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> FakeTransport:
    """Every client the commands build sends through this recording transport."""
    fake = FakeTransport(rejecting)
    build = Target.client

    def client(self: Target, environ: dict[str, str] | None = None, **options: object) -> object:
        return build(self, environ, transport=fake, **options)

    monkeypatch.setattr(Target, "client", client)
    return fake


def bodies(wire: FakeTransport) -> list[dict[str, Any]]:
    return [orjson.loads(sent.body or b"") for sent in wire.api_calls]


def contexts(wire: FakeTransport) -> list[dict[str, Any]]:
    return [body["customerContext"] for body in bodies(wire)]


def write_lines(path: Path, *lines: str) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_key_attribute_option_reaches_the_wire(wire: FakeTransport, tmp_path: Path) -> None:
    """``send --key-attribute email`` sends each customer_key under the apiName email."""
    path = write_lines(
        tmp_path / "a.ndjson",
        '{"customer_key": "k@example.com", "proposition": "p", "activity_type": "a"}',
    )
    CliRunner().invoke(cli, ["send", path, "--touchpoint", "w://x", "--key-attribute", "email"],
                       env=DEAD_TARGET)  # fmt: skip
    expected = [{"identifiers": [{"apiName": "email", "value": "k@example.com"}],
                 "baseTouchpointUri": "w://x"}]  # fmt: skip
    assert expected == contexts(wire)


def test_key_attribute_variable_reaches_the_wire(wire: FakeTransport, tmp_path: Path) -> None:
    """MXO_CUSTOMER_KEY_ATTRIBUTE names the key attribute when the option is not given."""
    path = write_lines(
        tmp_path / "a.ndjson", '{"customer_key": "k", "proposition": "p", "activity_type": "a"}'
    )
    env = {**DEAD_TARGET, "MXO_CUSTOMER_KEY_ATTRIBUTE": "crmid"}
    CliRunner().invoke(cli, ["send", path, "--touchpoint", "w://x"], env=env)
    assert [[{"apiName": "crmid", "value": "k"}]] == [c["identifiers"] for c in contexts(wire)]


def test_ndjson_identifiers_and_device_reach_the_wire(wire: FakeTransport, tmp_path: Path) -> None:
    """An NDJSON line's identifiers and device are sent in the customer context."""
    line = orjson.dumps({
        "customer_key": "k", "identifiers": {"email": "e@example.com"}, "proposition": "p",
        "activity_type": "a", "device": {"appName": "BankApp", "dev_type": "TABLET", "osName": "IOS"},
    }).decode()  # fmt: skip
    CliRunner().invoke(cli, ["send", write_lines(tmp_path / "a.ndjson", line), "--touchpoint", "w://x"],
                       env=DEAD_TARGET)  # fmt: skip
    expected = {
        "identifiers": [{"apiName": "customerkey", "value": "k"},
                        {"apiName": "email", "value": "e@example.com"}],
        "device": {"appName": "BankApp", "devType": "TABLET", "osName": "IOS"},
        "baseTouchpointUri": "w://x",
    }  # fmt: skip
    assert [expected] == contexts(wire)


def test_csv_identifiers_and_device_reach_the_wire(wire: FakeTransport, tmp_path: Path) -> None:
    """CSV ``id.<apiName>`` and ``device.<field>`` cells are sent in the customer context."""
    path = write_lines(tmp_path / "a.csv", "tid,id.email,proposition,activity_type,device.appName,device.devType,device.osName,device.locLatitude",
                       "t-1,e@example.com,p,a,BankApp,SMARTPHONE,ANDROID,51.5")  # fmt: skip
    CliRunner().invoke(cli, ["send", path, "--touchpoint", "w://x"], env=DEAD_TARGET)
    expected = {
        "tid": "t-1",
        "identifiers": [{"apiName": "email", "value": "e@example.com"}],
        "device": {"appName": "BankApp", "devType": "SMARTPHONE", "osName": "ANDROID",
                   "locLatitude": 51.5},
        "baseTouchpointUri": "w://x",
    }  # fmt: skip
    assert [expected] == contexts(wire)


@pytest.mark.parametrize("coalesce", [False, True])
def test_rejected_activities_are_dead_lettered_with_their_code(
    wire: FakeTransport, tmp_path: Path, coalesce: bool
) -> None:
    """Each rejected activity gets one dead-letter record with its code and index; exit 1."""
    lines = [
        '{"tid": "t-1", "activities": [{"proposition": "p", "activity_type": "a"}, {"proposition": "nope", "activity_type": "a"}]}',
        '{"tid": "t-2", "proposition": "nope", "activity_type": "b"}',
        '{"tid": "t-3", "proposition": "p", "activity_type": "c"}',
    ]
    dead = tmp_path / "dead.ndjson"
    args = ["send", write_lines(tmp_path / "a.ndjson", *lines), "--touchpoint", "w://x",
            "--dead-letter", str(dead), *(["--coalesce"] if coalesce else [])]  # fmt: skip
    result = CliRunner().invoke(cli, args, env=DEAD_TARGET)
    records = sorted(
        (r["line"], r["reason"], r["code"], r["activity"], r["error"], r["input"])
        for r in map(orjson.loads, dead.read_bytes().splitlines())
    )
    assert 1 == result.exit_code
    assert [
        (1, "rejected", "INVALID_PROPOSITION_CODE", 1, "unknown proposition", lines[0]),
        (2, "rejected", "INVALID_PROPOSITION_CODE", 0, "unknown proposition", lines[1]),
    ] == records


@pytest.mark.parametrize("coalesce", [False, True])
def test_rejected_activities_are_counted_in_the_summary(
    wire: FakeTransport, tmp_path: Path, coalesce: bool
) -> None:
    """The summary's rejected row counts the rejected activities and their lines."""
    lines = [
        '{"tid": "t-1", "activities": [{"proposition": "nope", "activity_type": "a"}, {"proposition": "nope", "activity_type": "b"}]}',
        '{"tid": "t-2", "proposition": "p", "activity_type": "b"}',
    ]
    args = ["send", write_lines(tmp_path / "a.ndjson", *lines), "--touchpoint", "w://x",
            *(["--coalesce"] if coalesce else [])]  # fmt: skip
    result = CliRunner().invoke(cli, args, env=DEAD_TARGET)
    found = re.search(r"rejected\s+([\d,]+) activities on ([\d,]+) lines?\b", result.stdout)
    assert found is not None, result.stdout
    assert "2" == found[1]
    assert "1" == found[2]


@pytest.mark.parametrize("coalesce", [False, True])
def test_rejected_activities_are_never_retried(
    wire: FakeTransport, tmp_path: Path, coalesce: bool
) -> None:
    """A line with a rejected activity is sent once: one request, whatever the path."""
    path = write_lines(
        tmp_path / "a.ndjson", '{"tid": "t-1", "proposition": "nope", "activity_type": "a"}'
    )
    CliRunner().invoke(cli, ["send", path, "--touchpoint", "w://x", *(["--coalesce"] * coalesce)],
                       env=DEAD_TARGET)  # fmt: skip
    assert 1 == len(wire.api_calls)


def test_erase_key_attribute_reaches_the_delete_body(wire: FakeTransport, tmp_path: Path) -> None:
    """``erase --key-attribute email`` names each customer key under email in the DELETE body."""
    wire.handler = lambda sent: response(200, {"tids": ["t"], "identifiers": []})
    source = write_lines(tmp_path / "c.txt", "k@example.com")
    CliRunner().invoke(cli, ["erase", source, "--journal", str(tmp_path / "j.jsonl"),
                             "--key-attribute", "email"], env=DEAD_TARGET)  # fmt: skip
    assert [{"identifier": {"apiName": "email", "value": "k@example.com"}}] == bodies(wire)


def test_erase_of_another_404_is_a_failure(wire: FakeTransport, tmp_path: Path) -> None:
    """A 404 without CUSTOMER_NOT_FOUND (an unknown path) fails the customer: exit 1."""
    wire.handler = lambda sent: response(404, b"<html>Not Found</html>")
    source = write_lines(tmp_path / "c.txt", "k@example.com")
    result = CliRunner().invoke(cli, ["erase", source, "--journal", str(tmp_path / "j.jsonl")],
                                env=DEAD_TARGET)  # fmt: skip
    assert 1 == result.exit_code
    assert "every customer is erased" not in result.stdout


def test_erase_of_an_unknown_site_key_aborts(wire: FakeTransport, tmp_path: Path) -> None:
    """A 404 INVALID_SITEKEY stops the sweep with status 3 and names the code."""
    wire.handler = lambda sent: response(404, {"errorCode": "INVALID_SITEKEY", "errorMessage": "?"})
    source = write_lines(tmp_path / "c.txt", "a@example.com", "b@example.com")
    result = CliRunner().invoke(cli, ["erase", source, "--journal", str(tmp_path / "j.jsonl"),
                                      "--concurrency", "1"], env=DEAD_TARGET)  # fmt: skip
    assert 3 == result.exit_code
    assert "INVALID_SITEKEY" in result.stderr


def test_erase_counts_customer_not_found_as_done(wire: FakeTransport, tmp_path: Path) -> None:
    """A 404 CUSTOMER_NOT_FOUND is nothing left to delete: exit 0."""
    wire.handler = lambda sent: response(
        404, {"errorCode": "CUSTOMER_NOT_FOUND", "errorMessage": "?"}
    )
    source = write_lines(tmp_path / "c.txt", "k@example.com")
    result = CliRunner().invoke(cli, ["erase", source, "--journal", str(tmp_path / "j.jsonl")],
                                env=DEAD_TARGET)  # fmt: skip
    assert 0 == result.exit_code
    assert "every customer is erased" in result.stdout


def test_erase_refuses_a_journal_of_another_key_attribute(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """Re-running erase on a journal with another --key-attribute exits 3 naming the field."""
    wire.handler = lambda sent: response(200, {"tids": ["t"], "identifiers": []})
    source = write_lines(tmp_path / "c.txt", "k@example.com")
    journal = str(tmp_path / "j.jsonl")
    runner = CliRunner()
    runner.invoke(cli, ["erase", source, "--journal", journal], env=DEAD_TARGET)
    result = runner.invoke(cli, ["erase", source, "--journal", journal, "--key-attribute", "email"],
                           env=DEAD_TARGET)  # fmt: skip
    assert 3 == result.exit_code
    assert "customer_key_attribute is 'customerkey' in the journal, 'email' here" in result.stderr
    assert 1 == len(wire.api_calls)


def test_erase_dead_letters_a_customer_no_delete_can_name(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """A customer with a key and another identifier but no TID is an invalid line, never sent."""
    source = write_lines(
        tmp_path / "c.ndjson", '{"customer_key": "k", "identifiers": {"email": "e"}}'
    )
    dead = tmp_path / "dead.ndjson"
    result = CliRunner().invoke(cli, ["erase", source, "--journal", str(tmp_path / "j.jsonl"),
                                      "--dead-letter", str(dead)], env=DEAD_TARGET)  # fmt: skip
    [record] = map(orjson.loads, dead.read_bytes().splitlines())
    assert 1 == result.exit_code
    assert "invalid" == record["reason"]
    assert 0 == len(wire.api_calls)


def test_structure_identifier_reaches_the_wire(wire: FakeTransport) -> None:
    """``structure --identifier email=...`` sends the identifier in the customer context."""
    wire.handler = lambda sent: response(200, {"structureApiName": "s", "structure": {"a": 1}})
    result = CliRunner().invoke(cli, ["structure", "s", "--identifier", "email=e@example.com",
                                      "--touchpoint", "w://x"], env=DEAD_TARGET)  # fmt: skip
    assert '{"a":1}\n' == result.stdout
    assert [[{"apiName": "email", "value": "e@example.com"}]] == [
        c["identifiers"] for c in contexts(wire)
    ]
