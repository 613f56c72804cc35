"""The mxo-async commands end to end against the emulator over loopback HTTP.

The emulator runs in a background thread with its own event loop (so each command can run its
own ``asyncio.run``) or, for the ``emulator`` command itself, in a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from mxo_async.cli import cli
from mxo_async.emulator import Catalogue, Emulator, EmulatorConfig, Faults

CLEAN_ENV: dict[str, str | None] = {
    "MXO_BASE_URL": None,
    "MXO_SITE_KEY": None,
    "MXO_CLIENT_ID": None,
    "MXO_CLIENT_SECRET": None,
    "MXO_TOKEN_URL": None,
    "MXO_CUSTOMER_KEY_ATTRIBUTE": None,
    "MXO_API_VERSION": None,
    "COLUMNS": "200",
}


class ThreadedEmulator:
    """An :class:`Emulator` serving from its own event loop in a daemon thread."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.emulator = Emulator(config)

    def __enter__(self) -> Emulator:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.emulator.start(), self.loop).result(10)
        return self.emulator

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.emulator.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """No faults; tests override it to inject some."""
    return EmulatorConfig()


@pytest.fixture
def emulator(emulator_config: EmulatorConfig) -> Iterator[Emulator]:
    """A running emulator in a background thread."""
    with ThreadedEmulator(emulator_config) as running:
        yield running


def target_env(emulator: Emulator) -> dict[str, str | None]:
    return {
        **CLEAN_ENV,
        "MXO_BASE_URL": emulator.base_url,
        "MXO_SITE_KEY": emulator.site_key,
        "MXO_CLIENT_ID": emulator.client_id,
        "MXO_CLIENT_SECRET": emulator.client_secret,
    }


def invoke(emulator: Emulator, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=target_env(emulator))


def activity_lines(customers: int, per_line: int) -> tuple[list[str], list[tuple[str, str, str]]]:
    """NDJSON lines (one- and multi-activity) and the (key, proposition, type) they carry."""
    lines: list[str] = []
    expected: list[tuple[str, str, str]] = []
    for n in range(customers):
        key = f"user{n}@example.com"
        if n % 2:
            lines.append(orjson.dumps({
                "customer_key": key, "touchpoint": "web://bank.com", "proposition": "card",
                "activity_type": f"view{n}", "timestamp": "2024-05-01T12:00:00Z",
                "properties": {"campaign": "summer"},
            }).decode())  # fmt: skip
            expected.append((key, "card", f"view{n}"))
        else:
            items = [{"proposition": "loan", "activity_type": f"step{i}"} for i in range(per_line)]
            lines.append(orjson.dumps({"customer_key": key, "activities": items}).decode())
            expected.extend((key, "loan", f"step{i}") for i in range(per_line))
    return lines, expected


def applied(emulator: Emulator) -> list[tuple[str, str, str]]:
    return sorted(
        (str(a["customerKey"]), str(a["propositionCode"]), str(a["activityTypeCode"]))
        for a in emulator.applied_activities()
    )


def write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def dead_letters(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def count(pattern: str, text: str) -> int | None:
    """The number a summary row shows (``pattern`` has one group), or None if it is missing."""
    found = re.search(pattern, text)
    return None if found is None else int(found.group(1).replace(",", ""))


# -- demo -----------------------------------------------------------------------------------------


def test_demo_runs_on_the_embedded_emulator() -> None:
    """``python -m mxo_async.cli demo`` exits 0 and prints its summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MXO_")}
    env["COLUMNS"] = "200"
    result = subprocess.run(
        [sys.executable, "-m", "mxo_async.cli", "demo", "--customers", "200"],
        capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    out = result.stdout.decode()
    assert 0 == result.returncode
    assert "Ingestion" in out
    assert "all 1,000 delivered activities were applied" in out
    assert "Result: everything was delivered" in out


def test_demo_with_faults_reports_what_was_not_delivered() -> None:
    """Under injected faults the exit status is 1 exactly when something is ambiguous or rejected."""
    result = CliRunner().invoke(cli, ["demo", "--customers", "150", "--faults"], env=CLEAN_ENV)
    ambiguous = count(r"ambiguous\s+([\d,]+) activities", result.stdout)
    rejected = count(r"rejected\s+([\d,]+) activities", result.stdout)
    assert ambiguous is not None
    assert rejected is not None
    assert "faults injected" in result.stdout
    assert (0 if ambiguous + rejected == 0 else 1) == result.exit_code


def test_demo_at_least_once_survives_faults() -> None:
    """With --at-least-once nothing is ambiguous despite resets and 5xx; rejections still count."""
    result = CliRunner().invoke(
        cli, ["demo", "--customers", "150", "--faults", "--at-least-once"], env=CLEAN_ENV
    )
    rejected = count(r"rejected\s+([\d,]+) activities", result.stdout)
    assert 0 == count(r"ambiguous\s+([\d,]+) activities", result.stdout)
    assert "stored twice by replays" in result.stdout
    assert (1 if rejected else 0) == result.exit_code


def test_demo_summary_shows_rejected_activities() -> None:
    """With the reject fault the summary counts what the emulator rejected, and exits 1."""
    result = CliRunner().invoke(
        cli, ["demo", "--customers", "100", "--faults", "reject=0.05"], env=CLEAN_ENV
    )
    client_count = count(r"rejected\s+([\d,]+) activities", result.stdout)
    server_count = count(r"activities rejected\s+([\d,]+)", result.stdout)
    assert 1 == result.exit_code
    assert (client_count or 0) > 0
    assert client_count == server_count


def test_demo_without_faults_rejects_nothing() -> None:
    """The demo's emulated catalogue knows every code it sends: 0 rejected, exit 0."""
    result = CliRunner().invoke(cli, ["demo", "--customers", "50"], env=CLEAN_ENV)
    assert 0 == result.exit_code
    assert 0 == count(r"rejected\s+([\d,]+) activities", result.stdout)
    assert 0 == count(r"activities rejected\s+([\d,]+)", result.stdout)


def test_demo_with_a_key_attribute() -> None:
    """``demo --key-attribute email`` runs its emulator and client on that key attribute."""
    result = CliRunner().invoke(
        cli, ["demo", "--customers", "50", "--key-attribute", "email"], env=CLEAN_ENV
    )
    assert 0 == result.exit_code
    assert "Result: everything was delivered" in result.stdout


# -- send -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("coalesce", [False, True])
def test_send_ndjson_delivers_every_activity_once(
    emulator: Emulator, tmp_path: Path, coalesce: bool
) -> None:
    """Every activity of an NDJSON file is applied exactly once; exit 0; no dead letter."""
    lines, expected = activity_lines(40, per_line=3)
    path = write(tmp_path / "in.ndjson", lines)
    args = ["send", path, "--touchpoint", "app://mobile", *(["--coalesce"] if coalesce else [])]
    result = invoke(emulator, *args)
    assert 0 == result.exit_code
    assert sorted(expected) == applied(emulator)
    assert not (tmp_path / "in.ndjson.dead-letter.ndjson").exists()


@pytest.mark.parametrize("coalesce", [False, True])
def test_send_csv_delivers_every_activity_once(
    emulator: Emulator, tmp_path: Path, coalesce: bool
) -> None:
    """Every CSV row is applied exactly once, with or without coalescing."""
    rows = ["customer_key,touchpoint,proposition,activity_type,timestamp,prop.segment"]
    expected = []
    for n in range(30):
        key = f"c{n % 7}@example.com"  # several rows per customer: coalescing has work to do
        rows.append(f"{key},web://bank.com,savings,view{n},2024-05-01T12:00:00Z,retail")
        expected.append((key, "savings", f"view{n}"))
    result = invoke(
        emulator, "send", write(tmp_path / "in.csv", rows), *(["--coalesce"] * coalesce)
    )
    requests = emulator.counters.activity_requests_applied
    assert 0 == result.exit_code
    assert sorted(expected) == applied(emulator)
    if coalesce:
        assert requests < 30
    else:
        assert 30 == requests


def test_send_dead_letters_bad_lines_and_sends_the_rest(emulator: Emulator, tmp_path: Path) -> None:
    """Bad lines go to the dead letter with line numbers and reasons; good ones are sent."""
    lines, expected = activity_lines(4, per_line=2)
    lines[1:1] = ["{broken", '{"customer_key": "x@example.com", "proposition": "p"}']
    dead = tmp_path / "dead.ndjson"
    result = invoke(emulator, "send", write(tmp_path / "in.ndjson", lines),
                    "--touchpoint", "web://x", "--dead-letter", str(dead))  # fmt: skip
    records = dead_letters(dead)
    assert 1 == result.exit_code
    assert sorted(expected) == applied(emulator)
    assert [(2, "invalid", "{broken"), (3, "invalid", lines[2])] == [
        (r["line"], r["reason"], r["input"]) for r in records
    ]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(faults=Faults(reset_after=1.0))])
def test_send_reports_ambiguous_requests(emulator: Emulator, tmp_path: Path) -> None:
    """Requests reset after they were applied are dead-lettered as ambiguous, exit 1."""
    lines, _ = activity_lines(3, per_line=1)
    dead = tmp_path / "dead.ndjson"
    result = invoke(emulator, "send", write(tmp_path / "in.ndjson", lines),
                    "--touchpoint", "web://x", "--dead-letter", str(dead))  # fmt: skip
    reasons = sorted((r["line"], r["reason"]) for r in dead_letters(dead))
    assert 1 == result.exit_code
    assert [(1, "ambiguous"), (2, "ambiguous"), (3, "ambiguous")] == reasons


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(faults=Faults(status_503=0.3, retry_after=0.01), seed=4)]
)
def test_send_retries_refusals_and_delivers_once(emulator: Emulator, tmp_path: Path) -> None:
    """503s (certainly not applied) are retried; each activity still arrives exactly once."""
    lines, expected = activity_lines(20, per_line=2)
    result = invoke(emulator, "send", write(tmp_path / "in.ndjson", lines), "--touchpoint", "w://x")
    assert 0 == result.exit_code
    assert sorted(expected) == applied(emulator)
    assert emulator.counters.faults_injected.get("status_503", 0) > 0


def test_send_reads_stdin_from_a_pipe(emulator: Emulator) -> None:
    """``send -`` streams NDJSON from a pipe (the reader thread) in a real process."""
    lines, expected = activity_lines(10, per_line=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MXO_")}
    env.update({k: v for k, v in target_env(emulator).items() if v is not None})
    result = subprocess.run(
        [sys.executable, "-m", "mxo_async.cli", "send", "-", "--touchpoint", "web://x"],
        input="".join(line + "\n" for line in lines).encode(),
        capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert 0 == result.returncode
    assert sorted(expected) == applied(emulator)


def test_send_with_refused_credentials_aborts(emulator: Emulator, tmp_path: Path) -> None:
    """A wrong client secret stops the run with status 3 and never prints the secret."""
    path = write(tmp_path / "in.ndjson", activity_lines(3, 1)[0])
    env = {**target_env(emulator), "MXO_CLIENT_SECRET": "wrong-s3cr3t"}
    result = CliRunner().invoke(cli, ["send", path, "--touchpoint", "w://x"], env=env)
    assert 3 == result.exit_code
    assert "wrong-s3cr3t" not in result.output


CATALOGUE = EmulatorConfig(catalogue=Catalogue(propositions=["card", "loan"]))


@pytest.mark.parametrize("emulator_config", [CATALOGUE])
@pytest.mark.parametrize("coalesce", [False, True])
def test_send_dead_letters_rejected_activities_with_their_code(
    emulator: Emulator, tmp_path: Path, coalesce: bool
) -> None:
    """Activities outside the catalogue are dead-lettered one by one with their code; exit 1."""
    lines = [
        '{"customer_key": "a@example.com", "activities": [{"proposition": "card", "activity_type": "view"}, {"proposition": "nope", "activity_type": "view"}]}',
        '{"customer_key": "b@example.com", "proposition": "gone", "activity_type": "view"}',
        '{"customer_key": "c@example.com", "proposition": "loan", "activity_type": "apply"}',
    ]
    dead = tmp_path / "dead.ndjson"
    result = invoke(emulator, "send", write(tmp_path / "in.ndjson", lines), "--touchpoint",
                    "web://x", "--dead-letter", str(dead), *(["--coalesce"] * coalesce))  # fmt: skip
    records = sorted((r["line"], r["reason"], r["code"], r["activity"]) for r in dead_letters(dead))
    assert 1 == result.exit_code
    assert [
        (1, "rejected", "INVALID_PROPOSITION_CODE", 1),
        (2, "rejected", "INVALID_PROPOSITION_CODE", 0),
    ] == records
    assert [("a@example.com", "card", "view"), ("c@example.com", "loan", "apply")] == applied(
        emulator
    )
    assert 2 == count(r"rejected\s+([\d,]+) activities", result.stdout)


@pytest.mark.parametrize("emulator_config", [CATALOGUE])
def test_send_never_retries_rejected_activities(emulator: Emulator, tmp_path: Path) -> None:
    """Each rejected activity reaches the emulator once: no request is replayed."""
    lines = [
        f'{{"customer_key": "c{n}@example.com", "proposition": "nope", "activity_type": "view"}}'
        for n in range(5)
    ]
    invoke(emulator, "send", write(tmp_path / "in.ndjson", lines), "--touchpoint", "web://x")
    assert 5 == emulator.counters.activity_requests
    assert 5 == emulator.counters.rejected_activities


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(key_attribute="email")])
def test_send_key_attribute_names_the_space_key(emulator: Emulator, tmp_path: Path) -> None:
    """With --key-attribute email, customer keys land on the space's email key attribute."""
    lines, expected = activity_lines(6, per_line=2)
    path = write(tmp_path / "in.ndjson", lines)
    result = invoke(emulator, "send", path, "--touchpoint", "web://x", "--key-attribute", "email")
    assert 0 == result.exit_code
    assert sorted(expected) == applied(emulator)


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(key_attribute="email")])
def test_send_key_attribute_from_the_environment(emulator: Emulator, tmp_path: Path) -> None:
    """MXO_CUSTOMER_KEY_ATTRIBUTE does what --key-attribute does."""
    lines, expected = activity_lines(4, per_line=1)
    env = {**target_env(emulator), "MXO_CUSTOMER_KEY_ATTRIBUTE": "email"}
    result = CliRunner().invoke(
        cli, ["send", write(tmp_path / "in.ndjson", lines), "--touchpoint", "web://x"], env=env
    )
    assert 0 == result.exit_code
    assert sorted(expected) == applied(emulator)


def test_send_identifiers_and_device_from_ndjson(emulator: Emulator, tmp_path: Path) -> None:
    """NDJSON identifiers link to the customer; a device is accepted by the emulator's schema."""
    line = orjson.dumps({
        "customer_key": "ann@example.com", "identifiers": {"crm": "C-17"},
        "proposition": "card", "activity_type": "view",
        "device": {"appName": "BankApp", "devType": "SMARTPHONE", "osName": "IOS",
                   "locLatitude": 51.5, "locLastUpdated": "2024-05-01T12:00:00Z"},
    }).decode()  # fmt: skip
    result = invoke(
        emulator, "send", write(tmp_path / "in.ndjson", [line]), "--touchpoint", "w://x"
    )
    stored = emulator.customer(identifiers={"crm": "C-17"})
    assert 0 == result.exit_code
    assert stored is not None
    assert "ann@example.com" == stored.key
    assert 1 == len(stored.activities)


def test_send_identifiers_and_device_from_csv(emulator: Emulator, tmp_path: Path) -> None:
    """CSV id.<apiName> and device.<field> columns are sent and accepted."""
    rows = [
        "id.crm,proposition,activity_type,device.app_name,device.dev_type,device.os_name",
        "C-1,card,view,BankApp,TABLET,ANDROID",
        "C-1,card,apply,,,",
    ]
    result = invoke(emulator, "send", write(tmp_path / "in.csv", rows), "--touchpoint", "w://x")
    stored = emulator.customer(identifiers={"crm": "C-1"})
    assert 0 == result.exit_code
    assert stored is not None
    assert 2 == len(stored.activities)


# -- erase ----------------------------------------------------------------------------------------


def test_erase_with_journal_resumes_and_reports(emulator: Emulator, tmp_path: Path) -> None:
    """A second run with the same journal sends no delete; the report lists every customer."""
    keys = [f"gone{n}@example.com" for n in range(12)]
    for key in keys[:10]:
        emulator.add_customer(key)  # the last two are unknown: "not found" counts as done
    source = write(tmp_path / "customers.txt", ["# to erase", *keys])
    journal, report = tmp_path / "erase.jsonl", tmp_path / "report.csv"
    first = invoke(emulator, "erase", source, "--journal", str(journal), "--report", str(report))
    deletes = emulator.counters.delete_requests
    second = invoke(emulator, "erase", source, "--journal", str(journal))
    assert 0 == first.exit_code
    assert 0 == second.exit_code
    assert 12 == deletes
    assert 12 == emulator.counters.delete_requests
    assert 13 == len(report.read_text().splitlines())
    assert [None] * 10 == [emulator.customer(key) for key in keys[:10]]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(faults=Faults(status_500=1.0))])
def test_erase_failures_are_dead_lettered_then_retried(emulator: Emulator, tmp_path: Path) -> None:
    """Failed erasures exit 1 and are dead-lettered; a re-run after recovery erases them."""
    for n in range(3):
        emulator.add_customer(f"k{n}@example.com")
    source = write(
        tmp_path / "customers.ndjson", [f'{{"customer_key": "k{n}@example.com"}}' for n in range(3)]
    )
    journal, dead = tmp_path / "erase.jsonl", tmp_path / "dead.ndjson"
    first = invoke(emulator, "erase", source, "--journal", str(journal), "--dead-letter", str(dead))
    emulator.faults = Faults()
    second = invoke(emulator, "erase", source, "--journal", str(journal))
    assert 1 == first.exit_code
    assert ["failed"] * 3 == [r["reason"] for r in dead_letters(dead)]
    assert 0 == second.exit_code
    assert 3 == emulator.counters.deletes_applied


def test_erase_with_a_wrong_site_key_fails(emulator: Emulator, tmp_path: Path) -> None:
    """A 404 INVALID_SITEKEY is never "not found": the sweep stops with status 3, nothing erased."""
    for key in ("a@example.com", "b@example.com"):
        emulator.add_customer(key)
    source = write(tmp_path / "customers.txt", ["a@example.com", "b@example.com"])
    env = {**target_env(emulator), "MXO_SITE_KEY": "ONE-WRONGKEY1-0009"}
    result = CliRunner().invoke(
        cli, ["erase", source, "--journal", str(tmp_path / "erase.jsonl")], env=env
    )
    assert 3 == result.exit_code
    assert "INVALID_SITEKEY" in result.stderr
    assert "every customer is erased" not in result.stdout
    assert 0 == emulator.counters.deletes_applied


def test_erase_by_identifier(emulator: Emulator, tmp_path: Path) -> None:
    """An NDJSON customer named by one identifier is erased through it and journaled so."""
    emulator.add_customer(identifiers={"crm": "C-5"})
    source = write(tmp_path / "customers.ndjson", ['{"identifiers": {"crm": "C-5"}}'])
    journal = tmp_path / "erase.jsonl"
    result = invoke(emulator, "erase", source, "--journal", str(journal))
    lines = dead_letters(journal)  # the journal is JSON lines too
    assert 0 == result.exit_code
    assert emulator.customer(identifiers={"crm": "C-5"}) is None
    assert {"identifier": {"apiName": "crm", "value": "C-5"}} == lines[-1]["request"]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(key_attribute="email")])
def test_erase_key_attribute_names_the_space_key(emulator: Emulator, tmp_path: Path) -> None:
    """``erase --key-attribute email`` deletes customers keyed by email in that space."""
    emulator.add_customer("ann@example.com")
    source = write(tmp_path / "customers.txt", ["ann@example.com"])
    result = invoke(emulator, "erase", source, "--journal", str(tmp_path / "j.jsonl"),
                    "--key-attribute", "email")  # fmt: skip
    assert 0 == result.exit_code
    assert emulator.customer("ann@example.com") is None
    assert 1 == emulator.counters.deletes_applied


def test_erase_refuses_a_journal_of_another_site_key(emulator: Emulator, tmp_path: Path) -> None:
    """A journal that erased customers on another site key is refused: exit 3, no delete."""
    source = write(tmp_path / "customers.txt", ["a@example.com"])
    journal = tmp_path / "erase.jsonl"
    target = {
        "base_url": emulator.base_url,
        "site_key": "ONE-OTHER000-0001",
        "customer_key_attribute": "customerkey",
        "api_version": "3.1.0",
    }
    line: dict[str, object] = {
        "customer": {"tid": None, "key": "a@example.com", "identifiers": {}},
        "request": None,
        "outcome": "erased",
        "tids": ["tid-a"],
        "identifiers": [],
        "attempts": 1,
        "error": None,
        "time": "2024-05-01T12:00:00.000Z",
        "target": target,
    }
    journal.write_bytes(orjson.dumps(line) + b"\n")
    result = invoke(emulator, "erase", source, "--journal", str(journal))
    assert 3 == result.exit_code
    assert (
        f"site_key is 'ONE-OTHER000-0001' in the journal, '{emulator.site_key}' here"
        in result.stderr
    )
    assert 0 == emulator.counters.delete_requests


# -- structure and the emulator command -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def emulator_process() -> Iterator[str]:
    """``mxo-async emulator`` in a subprocess; yields its base URL once it accepts connections."""
    port = _free_port()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "mxo_async.cli", "emulator", "--port", str(port),
         "--client-secret", "sub-secret", "--site-key", "ONE-SUBPROCES01-0002"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def test_structure_reads_what_send_stored_on_the_emulator_command(
    emulator_process: str, tmp_path: Path
) -> None:
    """Against ``mxo-async emulator``: send, then ``structure activitySummary`` counts them once."""
    lines = [
        '{"customer_key": "ann@example.com", "proposition": "card", "activity_type": "view"}',
        '{"customer_key": "ann@example.com", "activities": [{"proposition": "card", "activity_type": "apply"}, {"proposition": "loan", "activity_type": "view"}]}',
    ]
    env = {**CLEAN_ENV, "MXO_CLIENT_SECRET": "sub-secret"}
    flags = [
        "--base-url",
        emulator_process,
        "--site-key",
        "ONE-SUBPROCES01-0002",
        "--client-id",
        "test-client",
    ]
    runner = CliRunner()
    sent = runner.invoke(
        cli,
        [*flags, "send", write(tmp_path / "a.ndjson", lines), "--touchpoint", "web://x"],
        env=env,
    )
    read = runner.invoke(cli, [*flags, "structure", "activitySummary", "--key", "ann@example.com",
                               "--touchpoint", "web://x"], env=env)  # fmt: skip
    summary = orjson.loads(read.stdout)
    assert 0 == sent.exit_code
    assert 0 == read.exit_code
    assert 3 == summary["activityCount"]
    assert {"card": {"view": 1, "apply": 1}, "loan": {"view": 1}} == summary["propositions"]


def test_structure_of_unknown_name_exits_1(emulator: Emulator) -> None:
    """An unpublished structure is reported (masked customer) with exit status 1."""
    result = invoke(
        emulator, "structure", "nope", "--key", "alice@example.com", "--touchpoint", "web://x"
    )
    assert 1 == result.exit_code
    assert "alice@example.com" not in result.output


def test_structure_prints_the_profile_with_properties(emulator: Emulator) -> None:
    """``--prop renewalDue=true`` reaches the Pull Structure and its offers."""
    result = invoke(emulator, "structure", "customerProfile", "--key", "bob@example.com",
                    "--touchpoint", "web://x", "--prop", "renewalDue=true")  # fmt: skip
    offers = [offer["code"] for offer in orjson.loads(result.stdout)["offers"]]
    assert 0 == result.exit_code
    assert ["renew10"] == offers


def test_structure_by_identifier(emulator: Emulator) -> None:
    """``structure --identifier`` reads the structure of the customer with that identifier."""
    emulator.add_customer(identifiers={"crm": "C-9"}, attributes={"tier": "gold"})
    result = invoke(emulator, "structure", "customerProfile", "--identifier", "crm=C-9",
                    "--touchpoint", "web://x")  # fmt: skip
    assert 0 == result.exit_code
    assert "gold" == orjson.loads(result.stdout)["tier"]


# -- interruptions, aborts and outputs (issue 14) -------------------------------------------------


def process_env(emulator: Emulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MXO_")}
    env.update({k: v for k, v in target_env(emulator).items() if v is not None})
    return env


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(faults=Faults(latency=0.002))])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_send_continues_with_skip_exactly_once(
    emulator: Emulator, tmp_path: Path, signum: signal.Signals
) -> None:
    """A signal mid-run settles the requests in flight; --skip from the summary sends the rest,
    and every activity is stored exactly once."""
    lines, expected = activity_lines(6000, per_line=1)
    path = write(tmp_path / "in.ndjson", lines)
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "mxo_async.cli", "send", path, "--touchpoint", "web://x",
         "--concurrency", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=process_env(emulator),
    )  # fmt: skip
    wait_for(lambda: emulator.counters.activity_requests_applied >= 200)
    process.send_signal(signum)
    out, _ = process.communicate(timeout=60)
    skip = re.search(r"--skip (\d+)", out)
    assert skip is not None
    assert (128 + signum) == process.returncode
    rest = invoke(emulator, "send", path, "--touchpoint", "web://x", "--skip", skip.group(1))
    assert 0 == rest.exit_code
    assert sorted(expected) == applied(emulator)


def test_interrupted_demo_prints_its_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGINT during the demo's ingestion stops it with a summary and status 130."""
    from mxo_async.cli._demo_data import demo_requests

    def interrupting(*args: Any) -> Iterator[Any]:
        for number, request in enumerate(demo_requests(*args)):
            if number == 50:
                os.kill(os.getpid(), signal.SIGINT)
            yield request

    monkeypatch.setattr("mxo_async.cli._demo.demo_requests", interrupting)
    result = CliRunner().invoke(cli, ["demo", "--customers", "2000"], env=CLEAN_ENV)
    delivered = count(r"delivered\s+([\d,]+) activit", result.stdout)
    assert 130 == result.exit_code
    assert "Stopped: SIGINT" in result.stdout
    assert delivered is not None
    assert 0 < delivered < 10_000


def test_send_to_a_host_that_refuses_connections_aborts(tmp_path: Path) -> None:
    """Nothing listens at the base URL: the run stops with status 3 and one line saying so."""
    lines, _ = activity_lines(300, per_line=1)
    env = {**CLEAN_ENV, "MXO_BASE_URL": f"http://127.0.0.1:{_free_port()}",
           "MXO_SITE_KEY": "ONE-TESTTEST01-0001", "MXO_CLIENT_ID": "id",
           "MXO_CLIENT_SECRET": "s3cr3t"}  # fmt: skip
    result = CliRunner().invoke(
        cli, ["send", write(tmp_path / "in.ndjson", lines), "--touchpoint", "w://x"], env=env
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert 3 == result.exit_code
    assert 1 == len(errors)
    assert "the MXO host cannot be reached" in errors[0]


def test_send_with_an_unknown_site_key_stops_early(emulator: Emulator, tmp_path: Path) -> None:
    """A wrong site key stops the run with status 3 long before every line is tried."""
    lines, _ = activity_lines(3000, per_line=1)
    env = {**target_env(emulator), "MXO_SITE_KEY": "ONE-WRONGKEY1-0009"}
    result = CliRunner().invoke(
        cli, ["send", write(tmp_path / "in.ndjson", lines), "--touchpoint", "w://x"], env=env
    )
    assert 3 == result.exit_code
    assert emulator.counters.requests < 500
