"""The mxo-async commands as a newcomer meets them: signals, aborts, masking, output paths, wording.

Every command sends through a recording transport (no network); a handler may raise a signal
against this very process to interrupt a run at a chosen request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import click
import orjson
import pytest
from click.testing import CliRunner, Result

from mxo_async import Customer, NotFoundError, RetryPolicy, TransportError
from mxo_async._transport import RawResponse
from mxo_async._verdicts import describe_error, mask_echo
from mxo_async.cli import INSTALL_HINT, cli
from mxo_async.cli._inputs import CsvActivities, CsvCustomers
from mxo_async.cli._status import FailureWatch
from mxo_async.cli._target import Target
from tests.fakes import FakeTransport, Sent, response
from tests.test_cli import DEAD_TARGET, write_lines

OK = {"tid": "t-1", "errors": []}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> FakeTransport:
    """Every client the commands build sends through this recording transport, and retries
    without waiting."""
    fake = FakeTransport()
    build = Target.client

    def client(self: Target, environ: dict[str, str] | None = None, **options: Any) -> object:
        policy = options.get("retry") or RetryPolicy()
        options["retry"] = attrs.evolve(policy, backoff_base=1e-4, backoff_cap=1e-3)
        return build(self, environ, transport=fake, **options)

    monkeypatch.setattr(Target, "client", client)
    return fake


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env={**DEAD_TARGET, **(env or {})})


def activity(n: int, key: str | None = None) -> str:
    return orjson.dumps(
        {"customer_key": key or f"user{n}@example.com", "proposition": "p", "activity_type": "a"}
    ).decode()


def ndjson(tmp_path: Path, count: int) -> str:
    return write_lines(tmp_path / "in.ndjson", *(activity(n) for n in range(1, count + 1)))


def records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def sent_keys(wire: FakeTransport) -> list[str]:
    keys = []
    for sent in wire.api_calls:
        body = orjson.loads(sent.body or b"{}")
        context = body.get("customerContext", body)
        identifiers = context.get("identifiers") or [context.get("identifier")]
        keys.append(identifiers[0]["value"])
    return keys


async def deliver(signum: signal.Signals, times: int = 1) -> None:
    """Raise ``signum`` against this process ``times`` times, letting the loop see each one."""
    for _ in range(times):
        os.kill(os.getpid(), signum)
        for _ in range(20):
            await asyncio.sleep(0)


def on_call(
    number: int, action: Callable[[], Awaitable[None]], then: RawResponse | None = None
) -> Callable[[Sent], Awaitable[RawResponse]]:
    """A handler that runs ``action`` during API call ``number`` (1-based), then answers."""
    calls = 0

    async def handler(sent: Sent) -> RawResponse:
        nonlocal calls
        calls += 1
        if calls == number:
            await action()
        return then or response(200, OK)

    return handler


async def hang_forever() -> None:
    await asyncio.Event().wait()


# -- item 2: SIGINT and SIGTERM during a run ------------------------------------------------------


def test_first_sigint_lets_the_request_in_flight_settle(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """A SIGINT stops reading: the request in flight is delivered, no later line is sent, exit 130."""
    wire.handler = on_call(1, lambda: deliver(signal.SIGINT))
    result = run("send", ndjson(tmp_path, 5), "--touchpoint", "w://x", "--concurrency", "1")
    assert 130 == result.exit_code
    assert ["user1@example.com"] == sent_keys(wire)
    assert not os.path.exists(tmp_path / "in.ndjson.dead-letter.ndjson")


def test_interrupted_summary_names_the_first_line_not_sent(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """The summary after a SIGINT says which line comes next and the --skip that continues."""
    wire.handler = on_call(2, lambda: deliver(signal.SIGINT))
    result = run("send", ndjson(tmp_path, 5), "--touchpoint", "w://x", "--concurrency", "1")
    assert "the first line not sent is line 3" in result.stdout
    assert "--skip 2" in result.stdout


def test_skip_continues_an_interrupted_run(wire: FakeTransport, tmp_path: Path) -> None:
    """``--skip N`` sends only the lines after line N and counts the skipped ones."""
    result = run("send", ndjson(tmp_path, 4), "--touchpoint", "w://x", "--skip", "2")
    assert 0 == result.exit_code
    assert ["user3@example.com", "user4@example.com"] == sent_keys(wire)
    assert "2 lines (--skip 2)" in result.stdout


def test_second_sigint_dead_letters_the_request_in_flight_as_ambiguous(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """A second SIGINT cancels the request in flight, which is dead-lettered as ambiguous."""

    async def twice_then_hang() -> None:
        await deliver(signal.SIGINT, times=2)
        await hang_forever()

    wire.handler = on_call(1, twice_then_hang)
    result = run("send", ndjson(tmp_path, 3), "--touchpoint", "w://x", "--concurrency", "1")
    dead = records(tmp_path / "in.ndjson.dead-letter.ndjson")
    assert 130 == result.exit_code
    assert [(1, "ambiguous")] == [(r["line"], r["reason"]) for r in dead]


def test_second_sigint_while_coalescing_dead_letters_every_unsettled_line(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """With --coalesce, an abort dead-letters every line whose request had not settled."""

    async def handler(sent: Sent) -> RawResponse:
        if len(wire.api_calls) == 1:
            await deliver(signal.SIGINT, times=2)
        await hang_forever()
        raise AssertionError("unreachable")

    wire.handler = handler
    result = run("send", ndjson(tmp_path, 3), "--touchpoint", "w://x", "--coalesce")
    dead = records(tmp_path / "in.ndjson.dead-letter.ndjson")
    assert 130 == result.exit_code
    assert [(1, "ambiguous"), (2, "ambiguous"), (3, "ambiguous")] == sorted(
        (r["line"], r["reason"]) for r in dead
    )


def test_sigterm_is_handled_like_sigint_with_status_143(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """SIGTERM stops the run the same way and exits 143."""
    wire.handler = on_call(1, lambda: deliver(signal.SIGTERM))
    result = run("send", ndjson(tmp_path, 3), "--touchpoint", "w://x", "--concurrency", "1")
    assert 143 == result.exit_code
    assert 1 == len(wire.api_calls)


def test_signal_handlers_are_restored_after_a_run(wire: FakeTransport, tmp_path: Path) -> None:
    """After a command, SIGINT and SIGTERM have the handlers they had before it."""
    sigint_before = signal.getsignal(signal.SIGINT)
    sigterm_before = signal.getsignal(signal.SIGTERM)
    run("send", ndjson(tmp_path, 1), "--touchpoint", "w://x")
    assert sigint_before == signal.getsignal(signal.SIGINT)
    assert sigterm_before == signal.getsignal(signal.SIGTERM)


def test_interrupted_erase_resumes_from_its_journal(wire: FakeTransport, tmp_path: Path) -> None:
    """A SIGINT during a sweep exits 130; the same command again erases only the rest."""
    erased = response(200, {"tids": ["t"], "identifiers": []})
    wire.handler = on_call(1, lambda: deliver(signal.SIGINT), erased)
    source = write_lines(tmp_path / "c.txt", "a@example.com", "b@example.com", "c@example.com")
    args = ["erase", source, "--journal", str(tmp_path / "j.jsonl"), "--concurrency", "1"]
    first = run(*args)
    wire.handler = lambda sent: erased
    second = run(*args)
    assert 130 == first.exit_code
    assert 0 == second.exit_code
    assert ["a@example.com", "b@example.com", "c@example.com"] == sent_keys(wire)


def test_second_sigint_during_erase_dead_letters_the_delete_in_flight(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """An aborted delete is dead-lettered as ambiguous and not journaled (the next run sends it)."""

    async def twice_then_hang() -> None:
        await deliver(signal.SIGINT, times=2)
        await hang_forever()

    wire.handler = on_call(1, twice_then_hang)
    source = write_lines(tmp_path / "c.txt", "a@example.com", "b@example.com")
    journal = tmp_path / "j.jsonl"
    result = run("erase", source, "--journal", str(journal), "--concurrency", "1")
    dead = records(tmp_path / "c.txt.dead-letter.ndjson")
    assert 130 == result.exit_code
    assert [(1, "ambiguous")] == [(r["line"], r["reason"]) for r in dead]
    assert b"" == journal.read_bytes()


# -- item 3: masking keeps messages readable ------------------------------------------------------


def test_a_one_letter_key_is_not_masked_inside_other_words() -> None:
    """With the key ``e``, a transport error's own text stays as the library wrote it."""
    error = TransportError("cannot connect: ClientConnectorError", request_sent=False)
    assert "TransportError: cannot connect: ClientConnectorError" == describe_error(
        error, Customer.by_key("e")
    )


def test_a_one_digit_key_leaves_the_status_readable() -> None:
    """With the key ``4``, ``HTTP 404`` stays whole and the echoed key is masked."""
    error = NotFoundError(404, "no customer 4")
    assert "NotFoundError: HTTP 404: no customer ***" == describe_error(error, Customer.by_key("4"))


def test_an_echoed_key_is_masked_as_a_whole_word_only() -> None:
    """A value is masked where it stands alone, not inside a longer word or number."""
    customer = Customer.by_key("alice@example.com")
    text = mask_echo("alice@example.com. malice@example.com.au", customer)
    assert "a***m. malice@example.com.au" == text


def test_key_e_keeps_the_structure_error_readable(wire: FakeTransport) -> None:
    """``structure --key e`` against an unreachable host prints the error unmangled."""

    def refuse(sent: Sent) -> RawResponse:
        raise TransportError("cannot connect: ClientConnectorError", request_sent=False)

    wire.handler = refuse
    result = run("structure", "s", "--key", "e", "--touchpoint", "w://x")
    assert "Error: key='***': TransportError: cannot connect: ClientConnectorError\n" == (
        result.stderr
    )


def test_key_4_keeps_the_dead_letter_error_readable(wire: FakeTransport, tmp_path: Path) -> None:
    """A 404 for the key ``4`` is dead-lettered as ``HTTP 404``, the echoed key masked."""
    wire.handler = lambda sent: response(404, {"errorCode": "X", "errorMessage": "no customer 4"})
    path = write_lines(tmp_path / "a.ndjson", activity(1, key="4"))
    run("send", path, "--touchpoint", "w://x")
    [record] = records(tmp_path / "a.ndjson.dead-letter.ndjson")
    assert "NotFoundError: HTTP 404 X: no customer ***" == record["error"]


# -- item 4: failures that cannot be about one item abort early -----------------------------------


def refused(sent: Sent) -> RawResponse:
    raise TransportError("cannot connect: ClientConnectorError", request_sent=False)


def test_send_to_an_unreachable_host_aborts_after_the_first_items(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """Connection refused on every attempt of the first 5 lines: exit 3 with one error line; at
    most the line already in flight follows them."""
    wire.handler = refused
    result = run("send", ndjson(tmp_path, 12), "--touchpoint", "w://x", "--concurrency", "1")
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert 3 == result.exit_code
    assert len(set(sent_keys(wire))) <= 5 + 1
    assert 1 == len(errors)


def test_erase_where_every_delete_is_404_aborts(wire: FakeTransport, tmp_path: Path) -> None:
    """A 404 without CUSTOMER_NOT_FOUND on each of the first 5 customers: exit 3 naming the
    cause; at most the delete already in flight follows them."""
    wire.handler = lambda sent: response(404, b"<html>Not Found</html>")
    source = write_lines(tmp_path / "c.txt", *(f"k{n}@example.com" for n in range(12)))
    result = run("erase", source, "--journal", str(tmp_path / "j.jsonl"), "--concurrency", "1")
    assert 3 == result.exit_code
    assert len(wire.api_calls) <= 5 + 1
    assert "the first 5 requests all failed" in result.stderr


def test_one_success_disarms_the_watch() -> None:
    """After a success among the first items, 404s are failures of their items only."""
    watch = FailureWatch(watched=3)
    seen = [watch.observe(e) for e in (None, *[NotFoundError(404, "x")] * 5)]
    assert [None] * 6 == seen


# -- item 5: output paths are checked before the first request ------------------------------------


def test_unwritable_dead_letter_is_a_usage_error_before_any_request(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """``--dead-letter /proc/nope/x`` exits 2 before anything is sent."""
    result = run(
        "send", ndjson(tmp_path, 2), "--touchpoint", "w://x", "--dead-letter", "/proc/nope/x"
    )
    assert 2 == result.exit_code
    assert 0 == len(wire.sent)
    assert "--dead-letter" in result.stderr


@pytest.mark.parametrize("option", ["--report", "--journal", "--dead-letter"])
def test_unwritable_erase_outputs_are_usage_errors_before_any_request(
    wire: FakeTransport, tmp_path: Path, option: str
) -> None:
    """Each of erase's output paths in a missing directory exits 2 before anything is sent."""
    source = write_lines(tmp_path / "c.txt", "k@example.com")
    paths = {"--journal": str(tmp_path / "j.jsonl"), "--report": str(tmp_path / "r.csv"),
             "--dead-letter": str(tmp_path / "d.ndjson"), option: str(tmp_path / "no" / "x.csv")}  # fmt: skip
    result = run("erase", source, *(part for pair in paths.items() for part in pair))
    assert 2 == result.exit_code
    assert 0 == len(wire.sent)
    assert option in result.stderr


# -- item 6: without the cli extra ----------------------------------------------------------------


def test_the_entry_point_without_click_says_how_to_install_it(tmp_path: Path) -> None:
    """Where click cannot be imported, ``mxo-async`` prints one line with the pip command."""
    shim = tmp_path / "shim" / "click"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'click'\", name='click')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim.parent), str(REPO)])}
    result = subprocess.run(
        [sys.executable, "-c", "from mxo_async.cli import main; main()"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert 2 == result.returncode
    assert INSTALL_HINT + "\n" == result.stderr


def test_importing_the_cli_package_does_not_import_click(tmp_path: Path) -> None:
    """``import mxo_async.cli`` loads neither click nor rich (the entry point imports them)."""
    code = "import sys, mxo_async.cli; print(sorted({'click', 'rich'} & set(sys.modules)))"
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert "[]\n" == result.stdout


# -- item 8: no wrapping when stderr is not a terminal --------------------------------------------


def test_error_lines_are_never_wrapped_when_stderr_is_redirected(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """A per-line error longer than 80 columns stays on one line of stderr."""
    unknown = {f"unknown_field_number_{n}": 1 for n in range(4)}
    line = orjson.dumps({"tid": "t", "proposition": "p", "activity_type": "a", **unknown}).decode()
    result = run("send", write_lines(tmp_path / "a.ndjson", line), "--touchpoint", "w://x",
                 env={"COLUMNS": "80"})  # fmt: skip
    expected = "line 1: invalid: unknown field(s): " + ", ".join(sorted(unknown))
    assert expected in result.stderr.splitlines()


def test_log_lines_are_never_wrapped_when_stderr_is_redirected(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """A library log record longer than 80 columns is one line of stderr with -v."""
    message = "a long warning " + "x" * 100

    async def warn() -> None:
        logging.getLogger("mxo_async.test").warning(message)

    wire.handler = on_call(1, warn)
    result = run("-v", "send", ndjson(tmp_path, 1), "--touchpoint", "w://x",
                 env={"COLUMNS": "80"})  # fmt: skip
    assert [f"WARNING mxo_async.test: {message}"] == [
        line for line in result.stderr.splitlines() if message in line
    ]


# -- item 9: the dead-letter recipe rebuilds a file send accepts ----------------------------------


def rebuild(dead: Path, out: Path) -> str:
    """What ``jq -r .input DEAD > OUT`` writes."""
    out.write_text("".join(record["input"] + "\n" for record in records(dead)))
    return str(out)


def test_csv_dead_letter_rebuilds_a_csv_file_send_accepts(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """``jq -r .input`` of a CSV run's dead letter is a CSV file that sends the failed rows."""
    wire.handler = lambda sent: response(400, {"errorCode": "BAD", "errorMessage": "no"})
    source = write_lines(tmp_path / "a.csv", "customer_key,proposition,activity_type",
                         "k1,p,a", "k2,p,a")  # fmt: skip
    dead = tmp_path / "dead.ndjson"
    run("send", source, "--touchpoint", "w://x", "--dead-letter", str(dead))
    wire.handler = lambda sent: response(200, OK)
    wire.sent.clear()
    result = run("send", rebuild(dead, tmp_path / "retry.csv"), "--touchpoint", "w://x")
    assert 0 == result.exit_code
    assert ["k1", "k2"] == sorted(sent_keys(wire))


def test_dead_letters_of_two_csv_runs_rebuild_one_file(wire: FakeTransport, tmp_path: Path) -> None:
    """The file appends across runs: each run's header record is skipped as a repeated header."""
    wire.handler = lambda sent: response(400, {"errorCode": "BAD", "errorMessage": "no"})
    dead = tmp_path / "dead.ndjson"
    for key in ("k1", "k2"):
        source = write_lines(tmp_path / f"{key}.csv", "customer_key,proposition,activity_type",
                             f"{key},p,a")  # fmt: skip
        run("send", source, "--touchpoint", "w://x", "--dead-letter", str(dead))
    wire.handler = lambda sent: response(200, OK)
    wire.sent.clear()
    result = run("send", rebuild(dead, tmp_path / "retry.csv"), "--touchpoint", "w://x")
    assert 0 == result.exit_code
    assert ["k1", "k2"] == sorted(sent_keys(wire))


def test_a_row_equal_to_the_header_is_skipped() -> None:
    """Activity and customer CSV parsers recognise a repeated header row (it is skipped)."""
    header = "customer_key,proposition,activity_type"
    assert CsvActivities(header, "w://x").repeats_header(header)
    assert CsvCustomers(header).repeats_header(f" {header}")
    assert not CsvActivities(header, "w://x").repeats_header("customer_key,p,a")


def test_stdin_dead_letter_name_is_in_the_help() -> None:
    """``send --help`` names the dead-letter file used for stdin."""
    result = CliRunner().invoke(cli, ["send", "--help"], env={**DEAD_TARGET, "COLUMNS": "200"})
    assert "mxo-async-dead-letter.ndjson for stdin" in result.stdout


# -- item 10: audit exports are private -----------------------------------------------------------


def test_erase_report_is_created_0600(wire: FakeTransport, tmp_path: Path) -> None:
    """``erase --report`` writes the audit export readable by its owner only."""
    wire.handler = lambda sent: response(200, {"tids": ["t"], "identifiers": []})
    source = write_lines(tmp_path / "c.txt", "k@example.com")
    report = tmp_path / "audit.csv"
    run("erase", source, "--journal", str(tmp_path / "j.jsonl"), "--report", str(report))
    assert 0o600 == stat.S_IMODE(os.stat(report).st_mode)


# -- item 11: the demo asks before writing to a real tenant ---------------------------------------


def test_demo_against_a_configured_target_needs_yes(wire: FakeTransport) -> None:
    """Without a terminal, ``demo`` against MXO_* exits 2 asking for --yes; nothing is sent."""
    result = run("demo", "--customers", "1")
    assert 2 == result.exit_code
    assert 0 == len(wire.sent)
    assert "--yes" in result.stderr


def test_demo_with_yes_runs_against_the_configured_target(wire: FakeTransport) -> None:
    """``demo --yes`` sends its activities to the configured target."""
    result = run("demo", "--customers", "1", "--yes")
    assert result.exit_code != 2
    assert len(wire.api_calls) > 0


# -- item 14: -v is what shows the library's warnings ---------------------------------------------


@pytest.mark.parametrize(("flags", "shown"), [([], False), (["-v"], True)])
def test_library_warnings_show_only_with_verbose(
    wire: FakeTransport, tmp_path: Path, flags: list[str], shown: bool
) -> None:
    """As the help says, the library's warnings reach stderr with -v, not without."""

    async def warn() -> None:
        logging.getLogger("mxo_async.test").warning("a library warning")

    wire.handler = on_call(1, warn)
    result = run(*flags, "send", ndjson(tmp_path, 1), "--touchpoint", "w://x")
    assert shown == ("a library warning" in result.stderr)


# -- item 15: options and inputs a newcomer expects -----------------------------------------------


def test_plain_http_to_a_remote_host_names_the_option(wire: FakeTransport, tmp_path: Path) -> None:
    """A non-loopback http:// base URL is refused with a hint naming --allow-insecure-http."""
    result = run("send", ndjson(tmp_path, 1), "--touchpoint", "w://x",
                 env={"MXO_BASE_URL": "http://mxo.example.com"})  # fmt: skip
    assert 2 == result.exit_code
    assert "--allow-insecure-http" in result.stderr


def test_allow_insecure_http_lets_a_remote_http_host_through(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """``--allow-insecure-http`` sends to a plain http:// host."""
    result = run("--allow-insecure-http", "send", ndjson(tmp_path, 1), "--touchpoint", "w://x",
                 env={"MXO_BASE_URL": "http://mxo.example.com"})  # fmt: skip
    assert 0 == result.exit_code
    assert "http://mxo.example.com/" == wire.api_calls[0].url[:23]


def test_api_version_option_reaches_the_path(wire: FakeTransport, tmp_path: Path) -> None:
    """``--api-version 3.0.0`` sends to the 3.0.0 API root."""
    run("--api-version", "3.0.0", "send", ndjson(tmp_path, 1), "--touchpoint", "w://x")
    assert "/one/oauth2/rt/api/3.0.0/" in wire.api_calls[0].url


def test_a_json_array_file_is_refused_once_before_sending(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """A ``.json`` file holding a JSON array exits 2 with one 'NDJSON is expected' message."""
    path = tmp_path / "a.json"
    path.write_text("[\n" + ",\n".join(activity(n) for n in range(14)) + "\n]\n")
    result = run("send", str(path), "--touchpoint", "w://x")
    assert 2 == result.exit_code
    assert 0 == len(wire.sent)
    assert 1 == result.stderr.count("NDJSON is expected")


def test_summary_reports_the_retry_budget_running_dry(wire: FakeTransport, tmp_path: Path) -> None:
    """When every delete fails with a 500, the retry budget runs dry and the summary says so."""
    wire.handler = lambda sent: response(500, {"errorMessage": "down"})
    source = write_lines(tmp_path / "c.txt", *(f"k{n}@example.com" for n in range(40)))
    result = run("erase", source, "--journal", str(tmp_path / "j.jsonl"))
    assert re.search(r"retry budget\s+\d+ of 500 tokens left \(it ran dry", result.stdout)


def test_a_customer_listed_three_times_is_deleted_once(wire: FakeTransport, tmp_path: Path) -> None:
    """Three lines naming the same customer send one DELETE; the summary counts 2 duplicates."""
    wire.handler = lambda sent: response(200, {"tids": ["t"], "identifiers": []})
    source = write_lines(tmp_path / "c.txt", "k@example.com", "k@example.com", "k@example.com")
    result = run("erase", source, "--journal", str(tmp_path / "j.jsonl"))
    assert 0 == result.exit_code
    assert 1 == len(wire.api_calls)
    assert re.search(r"duplicates\s+2 ", result.stdout)


# -- item 17: wording -----------------------------------------------------------------------------


def test_one_record_and_one_line_are_singular(wire: FakeTransport, tmp_path: Path) -> None:
    """One failed line reads '1 line (1 activity' and '1 record', not '1 lines' or '1 records'."""
    wire.handler = lambda sent: response(400, {"errorMessage": "no"})
    result = run("send", ndjson(tmp_path, 1), "--touchpoint", "w://x")
    assert re.search(r"failed\s+1 line \(1 activity, not stored\)", result.stdout)
    assert "(1 record appended)" in result.stdout


def test_csv_header_without_activity_type_reads_well(wire: FakeTransport, tmp_path: Path) -> None:
    """The missing-column message names the column without a wrong article."""
    source = write_lines(tmp_path / "a.csv", "customer_key,proposition", "k,p")
    result = run("send", source, "--touchpoint", "w://x")
    assert "the CSV header needs the column 'activity_type'" in result.stderr


def test_a_corrupt_journal_is_named_once(wire: FakeTransport, tmp_path: Path) -> None:
    """The error for a corrupt journal line names the journal once, with the line number."""
    journal = tmp_path / "j.jsonl"
    journal.write_text("not json\n{}\n")
    source = write_lines(tmp_path / "c.txt", "k@example.com")
    result = run("erase", source, "--journal", str(journal))
    assert 3 == result.exit_code
    assert 1 == result.stderr.count("erasure journal")
    assert f"erasure journal {journal}: line 1 is not a valid record" in result.stderr


def test_summary_rows_are_not_wrapped_when_stdout_is_redirected(
    wire: FakeTransport, tmp_path: Path
) -> None:
    """At 80 columns a redirected summary keeps each row on one line."""
    result = run("send", ndjson(tmp_path, 1), "--touchpoint", "w://x", env={"COLUMNS": "80"})
    row = re.compile(r"^unconfirmed\s+0 lines \(0 activities: stored, .*do not send them again\)$")
    assert 1 == sum(1 for line in result.stdout.splitlines() if row.match(line))


def _commands() -> list[list[str]]:
    group = cli
    assert isinstance(group, click.Group)
    return [[], *([name] for name in sorted(group.commands))]


def _option_names(path: list[str]) -> list[str]:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return [
        o
        for p in command.params
        if isinstance(p, click.Option)
        for o in p.opts
        if o.startswith("--")
    ]


@pytest.mark.parametrize("columns", [80, 200])
@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "mxo-async")
def test_help_reads_cleanly_at_the_terminal_width(command: list[str], columns: int) -> None:
    """Every help fits a terminal of 80 or 200 columns (click caps the text at 100) and splits
    neither an option name nor a hyphenated word across lines."""
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(REPO)}
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "mxo_async.cli", *command, "--help"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    width = min(columns, 100) - 2  # click's own margin
    lines = result.stdout.splitlines()
    assert 0 == result.returncode
    assert [] == [line for line in lines if len(line) > width]
    assert [] == [line for line in lines if re.search(r"\w-$", line)]
    assert [] == [name for name in _option_names(command) if name not in result.stdout]


# -- issue 13, item 3: a stored activity is never reported as not stored --------------------------


def test_an_unreadable_200_is_unconfirmed_not_failed(wire: FakeTransport, tmp_path: Path) -> None:
    """A 200 whose body cannot be read was stored: dead-lettered 'unconfirmed', never 'failed'."""
    wire.handler = lambda sent: response(200, b"<html>oops</html>")
    result = run("send", ndjson(tmp_path, 1), "--touchpoint", "w://x")
    [record] = records(tmp_path / "in.ndjson.dead-letter.ndjson")
    assert 1 == result.exit_code
    assert "unconfirmed" == record["reason"]
    assert re.search(r"unconfirmed\s+1 line \(1 activity: stored", result.stdout)
    assert re.search(r"failed\s+0 lines", result.stdout)


@pytest.mark.parametrize("coalesce", [False, True])
def test_an_unreadable_200_is_unconfirmed_on_both_paths(
    wire: FakeTransport, tmp_path: Path, coalesce: bool
) -> None:
    """Fan-out and the batcher both report an unreadable 200 as unconfirmed."""
    wire.handler = lambda sent: response(200, b"not json")
    run("send", ndjson(tmp_path, 2), "--touchpoint", "w://x", *(["--coalesce"] * coalesce))
    reasons = [r["reason"] for r in records(tmp_path / "in.ndjson.dead-letter.ndjson")]
    assert ["unconfirmed", "unconfirmed"] == reasons


# -- issue 13, item 13: one sweep per journal -----------------------------------------------------


def test_erase_of_a_journal_in_use_aborts(
    wire: FakeTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``erase`` on a journal another process has locked exits 3 and sends nothing."""
    import mxo_async._journal as journal_module

    monkeypatch.setattr(journal_module, "LOCK_GRACE", 0.0)
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b"")
    holder = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
         str(journal)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert "locked\n" == holder.stdout.readline()
        result = run("erase", write_lines(tmp_path / "c.txt", "k"), "--journal", str(journal))
    finally:
        holder.communicate("", timeout=10)
    assert 3 == result.exit_code
    assert 0 == len(wire.sent)
    assert "in use" in result.stderr
