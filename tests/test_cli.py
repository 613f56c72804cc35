"""The mxo-async command line without a network: input mapping, dead letters, exit rules, help."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from click.testing import CliRunner

from mxo_async import (
    Activity,
    ActivityRequest,
    AmbiguousDeliveryError,
    Customer,
    ServerError,
)
from mxo_async.cli import cli
from mxo_async.cli._deadletter import DeadLetter
from mxo_async.cli._demo_data import demo_requests, erasure_customers
from mxo_async.cli._inputs import (
    CsvActivities,
    CsvCustomers,
    InputError,
    detect_format,
    parse_activity_json,
    parse_customer_json,
    parse_customer_text,
)
from mxo_async.cli._lines import MAX_LINE_BYTES, Line, count_lines, iter_lines
from mxo_async.cli._progress import LatencyHistogram
from mxo_async.cli._status import ExitCode, Tally, describe_error, exit_code
from mxo_async.cli._target import Target

NOON = datetime(2024, 5, 1, 12, tzinfo=UTC)
NO_TARGET: dict[str, str | None] = {
    "MXO_BASE_URL": None,
    "MXO_SITE_KEY": None,
    "MXO_CLIENT_ID": None,
    "MXO_CLIENT_SECRET": None,
    "MXO_TOKEN_URL": None,
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
        ('{"proposition": "p", "activity_type": "a", "touchpoint": "w://x"}', "customer_key or tid is required"),
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


def _reader(*chunks: bytes):  # type: ignore[no-untyped-def]
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
    assert (2, True) == (lines[1].number, lines[1].error is not None)


async def test_overlong_line_is_flagged_and_numbering_continues() -> None:
    """A line over the limit is reported once; the next line keeps its number."""
    chunks = [b"x" * 65536] * (MAX_LINE_BYTES // 65536 + 2) + [b"\nnext\n"]
    lines = await _collect(iter_lines(_reader(*chunks)))
    assert [(1, True), (2, False)] == [(line.number, line.error is not None) for line in lines]


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
    errors: list[Exception | None], invalid: int, expected: ExitCode
) -> None:
    """Failed, ambiguous or invalid items make the exit status 1."""
    tally = Tally()
    for error in errors:
        tally.add(error, 1)  # type: ignore[arg-type]
    for _ in range(invalid):
        tally.add_invalid()
    assert expected == exit_code(tally)


def test_ambiguous_and_failed_are_counted_apart() -> None:
    """The tally keeps ambiguous (maybe stored) apart from failed (not stored), in activities."""
    tally = Tally()
    tally.add(AmbiguousDeliveryError("reset"), 3)
    tally.add(ServerError(500, "boom"), 2)
    tally.add(None, 4)
    assert (4, 2, 3) == (
        tally.activities_delivered,
        tally.activities_failed,
        tally.activities_ambiguous,
    )


def test_error_description_masks_the_customer_key() -> None:
    """An error message that repeats the customer key shows it masked."""
    customer = Customer.by_key("alice@example.com")
    text = describe_error(ServerError(500, "no such alice@example.com"), customer)
    assert "ServerError: HTTP 500: no such a***m" == text


def test_target_repr_hides_the_secret() -> None:
    """The global options never show the client secret."""
    assert "s3cr3t" not in repr(Target(client_secret="s3cr3t"))


def test_latency_percentiles_are_within_two_percent() -> None:
    """The histogram's percentiles are within 2% of the exact ones."""
    histogram = LatencyHistogram()
    for n in range(1, 1001):
        histogram.add(n / 1000)
    results = [histogram.percentile(q) for q in (50, 90, 99)]
    assert all(abs(r - e) / e < 0.02 for r, e in zip(results, (0.5, 0.9, 0.99), strict=True))  # type: ignore[operator]


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
    assert ({7}, True) == (
        set(per_customer.values()),
        all(now - timedelta(days=30) <= m <= now for m in moments if m is not None),
    )


def test_demo_traffic_is_reproducible() -> None:
    """The same seed gives the same traffic."""
    assert list(demo_requests(5, 3, 9, NOON)) == list(demo_requests(5, 3, 9, NOON))


def test_demo_erases_every_tenth_customer() -> None:
    """The demo erases 10% of its customers."""
    assert 20 == len(list(erasure_customers(200, seed=1)))


# -- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ([], ["--base-url", "--site-key", "--client-id", "--client-secret", "--token-url", "--verbose"]),
        (["demo"], ["--customers", "--activities-per-customer", "--concurrency", "--faults", "--seed", "--at-least-once", "--adaptive", "--emulator"]),
        (["send"], ["--touchpoint", "--concurrency", "--coalesce", "--dead-letter", "--format", "--at-least-once"]),
        (["erase"], ["--journal", "--report", "--concurrency", "--dead-letter", "--format"]),
        (["structure"], ["--key", "--tid", "--touchpoint", "--prop", "--pretty"]),
        (["emulator"], ["--host", "--port", "--client-id", "--client-secret", "--site-key", "--token-ttl", "--faults", "--seed"]),
    ],
)  # fmt: skip
def test_help_mentions_every_option(command: list[str], options: list[str]) -> None:
    """``--help`` of each command documents each of its options."""
    result = CliRunner().invoke(cli, [*command, "--help"], env=NO_TARGET)
    assert (0, []) == (result.exit_code, [o for o in options if o not in result.output])


def test_missing_target_is_a_usage_error_naming_the_variable(tmp_path: os.PathLike[str]) -> None:
    """``send`` without MXO_BASE_URL exits 2 and says which variable to set."""
    path = os.path.join(tmp_path, "a.ndjson")
    with open(path, "w") as file:
        file.write("{}\n")
    result = CliRunner().invoke(cli, ["send", path], env=NO_TARGET)
    assert (2, True) == (result.exit_code, "MXO_BASE_URL" in result.stderr)


def test_usage_error_never_echoes_the_secret(tmp_path: os.PathLike[str]) -> None:
    """A usage error after --client-secret does not print the secret."""
    result = CliRunner().invoke(
        cli, ["--client-secret", "s3cr3t-value", "structure", "x", "--touchpoint", "w://x"],
        env=NO_TARGET,
    )  # fmt: skip
    assert (2, False) == (result.exit_code, "s3cr3t" in result.output)


def test_structure_needs_a_customer() -> None:
    """``structure`` without --key or --tid is a usage error."""
    result = CliRunner().invoke(cli, ["structure", "p", "--touchpoint", "w://x"], env=DEAD_TARGET)
    assert (2, True) == (result.exit_code, "--key" in result.stderr)


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
    assert (2, True) == (result.exit_code, "colour" in result.stderr)


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
    assert (1, [(1, "invalid"), (3, "invalid")]) == (
        result.exit_code,
        [(r["line"], r["reason"]) for r in records],
    )
