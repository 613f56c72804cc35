"""Tests for the GDPR erasure journal and the journaled erasure sweep."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from mxo_async import Customer, Erasure, Identifier, MXOError, Outcome
from mxo_async._audit import JournalSummary, export_journal, summarize_journal
from mxo_async._fanout import FanOut
from mxo_async._journal import ErasureJournal, JournalError, build_erasure_sweep

NOON = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
CUSTOMERS = [Customer.by_key(f"user{n}@example.com") for n in range(10)]
TARGET = {
    "base_url": "https://eu2.thunderhead.com",
    "site_key": "ONE-TESTTEST01-0001",
    "customer_key_attribute": "customerkey",
    "api_version": "3.1.0",
}
# A line as journals wrote them before identifiers and targets: customer {tid, key}, no request.
OLD_LINE = (
    b'{"customer":{"tid":null,"key":"user0@example.com"},"outcome":"erased",'
    b'"tids":["tid-user0@example.com"],"identifiers":[{"apiName":"customerkey",'
    b'"value":"user0@example.com"}],"attempts":1,"error":null,"time":"2024-05-01T12:00:00.250Z"}\n'
)


def erasure_for(customer: Customer) -> Erasure:
    return Erasure((f"tid-{customer.key}",), (Identifier("customerkey", str(customer.key)),))


class FakeDelete:
    """A delete call that records every customer it was asked for and fails for some."""

    def __init__(self, failing: frozenset[Customer] = frozenset()) -> None:
        self.failing = failing
        self.calls: list[Customer] = []

    async def __call__(self, customer: Customer) -> tuple[Erasure, int]:
        self.calls.append(customer)
        await asyncio.sleep(0)
        if customer in self.failing:
            error = MXOError("server down")
            error.attempts = 3
            raise error
        return erasure_for(customer), 1


async def run(sweep: FanOut[Customer, Erasure]) -> list[Outcome[Customer, Erasure]]:
    async with sweep as outcomes:
        return [outcome async for outcome in outcomes]


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def customer_key(line: dict[str, object]) -> object:
    """The customer key a journal line records."""
    customer = line["customer"]
    assert isinstance(customer, dict)
    return customer["key"]


async def test_line_format(tmp_path: Path) -> None:
    """A settled customer is journaled as one JSON line with the documented fields."""
    journal = tmp_path / "erase.jsonl"
    sweep = build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=journal, clock=lambda: NOON)
    await run(sweep)
    expected: dict[str, object] = {
        "customer": {"tid": None, "key": "user0@example.com", "identifiers": {}},
        "request": None,
        "outcome": "erased",
        "tids": ["tid-user0@example.com"],
        "identifiers": [{"apiName": "customerkey", "value": "user0@example.com"}],
        "attempts": 1,
        "error": None,
        "time": "2024-05-01T12:00:00.250Z",
        "target": None,
    }
    assert lines(journal) == [expected]


async def test_failed_line_names_the_error(tmp_path: Path) -> None:
    """A failed customer's line says failed, with the error type and message."""
    journal = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(frozenset(CUSTOMERS)), journal=journal))
    [line] = lines(journal)
    assert "failed" == line["outcome"]
    assert "MXOError: server down" == line["error"]
    assert 3 == line["attempts"]
    assert [] == line["tids"]


async def test_not_found_is_journaled_as_not_found(tmp_path: Path) -> None:
    """An erasure with found=False is journaled as not_found."""
    journal = tmp_path / "erase.jsonl"

    async def delete(customer: Customer) -> tuple[Erasure, int]:
        return Erasure(found=False), 1

    await run(build_erasure_sweep(CUSTOMERS[:1], delete, journal=journal))
    assert [line["outcome"] for line in lines(journal)] == ["not_found"]


async def test_journal_file_is_private(tmp_path: Path) -> None:
    """A new journal is created readable and writable by its owner only."""
    journal = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=journal))
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600


async def test_rerun_skips_done_and_retries_failed(tmp_path: Path) -> None:
    """A re-run sends deletes only for customers that failed before and reports everyone."""
    journal = tmp_path / "erase.jsonl"
    failing = frozenset(CUSTOMERS[3:5])
    await run(build_erasure_sweep(CUSTOMERS, FakeDelete(failing), journal=journal))
    second = FakeDelete()
    outcomes = await run(build_erasure_sweep(CUSTOMERS, second, journal=journal, concurrency=3))
    assert set(second.calls) == failing
    assert sorted(o.index for o in outcomes if o.ok) == list(range(10))


async def test_skipped_outcome_is_rebuilt_from_the_journal(tmp_path: Path) -> None:
    """A customer done in a previous run is yielded with its journaled erasure and attempts=0."""
    journal = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=journal))
    sweep = build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=journal)
    [outcome] = await run(sweep)
    assert erasure_for(CUSTOMERS[0]) == outcome.result
    assert 0 == outcome.attempts
    assert 1 == sweep.progress.skipped
    assert 0 == sweep.progress.started


async def test_last_state_wins(tmp_path: Path) -> None:
    """A customer that failed, then was erased, counts as done on load."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:2], FakeDelete(frozenset(CUSTOMERS)), journal=path))
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=path))
    async with ErasureJournal(path) as journal:
        assert 1 == journal.done_count
        assert 1 == journal.failed_count


async def test_outcome_is_fsynced_before_it_is_yielded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the consumer receives an outcome, its line has already been fsynced."""
    journal = tmp_path / "erase.jsonl"
    synced: list[bytes] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(journal.read_bytes())

    monkeypatch.setattr(os, "fsync", fsync)
    sweep = build_erasure_sweep(CUSTOMERS, FakeDelete(), journal=journal, concurrency=4)
    async with sweep as outcomes:
        async for outcome in outcomes:
            assert synced
            assert f'"key":"{outcome.item.key}"'.encode() in synced[-1]


async def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    """A torn last line is ignored on load and truncated so new lines stay valid."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:2], FakeDelete(), journal=path))
    with path.open("ab") as file:
        file.write(b'{"customer": {"tid": null, "key": "user2@ex')
    delete = FakeDelete()
    await run(build_erasure_sweep(CUSTOMERS[:3], delete, journal=path))
    assert [CUSTOMERS[2]] == delete.calls
    assert 3 == len(lines(path))


async def test_invalid_middle_line_is_an_error(tmp_path: Path) -> None:
    """An invalid line followed by valid ones raises JournalError naming the line."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=path))
    good = path.read_bytes()
    path.write_bytes(good + b"not json\n" + good)
    with pytest.raises(JournalError, match="line 2") as caught:
        await ErasureJournal(path).open()
    assert caught.value.line == 2


async def test_cancelled_record_still_writes_a_whole_line(tmp_path: Path) -> None:
    """Cancelling the wait for a record does not cancel or tear its write."""
    path = tmp_path / "erase.jsonl"
    journal = ErasureJournal(path)
    await journal.open()
    outcome = Outcome(CUSTOMERS[0], erasure_for(CUSTOMERS[0]), None, 1, 0)
    task = asyncio.ensure_future(journal.record(outcome))
    await asyncio.sleep(0)
    task.cancel()
    await journal.aclose()
    assert [line["outcome"] for line in lines(path)] == ["erased"]


async def test_early_break_closes_everything(tmp_path: Path) -> None:
    """Leaving a journaled sweep early leaves no task running and every line whole."""
    path = tmp_path / "erase.jsonl"

    async def customers() -> AsyncIterator[Customer]:
        for customer in CUSTOMERS:
            yield customer

    async with build_erasure_sweep(customers(), FakeDelete(), journal=path) as outcomes:
        async for _ in outcomes:
            break
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert all(line["outcome"] == "erased" for line in lines(path))


async def test_summary_counts_final_states(tmp_path: Path) -> None:
    """summarize_journal counts customers by their last outcome and spans their times."""
    path = tmp_path / "erase.jsonl"
    times = iter(datetime(2024, 5, 1, 12, 0, n, tzinfo=UTC) for n in range(20))
    await run(
        build_erasure_sweep(
            CUSTOMERS[:4],
            FakeDelete(frozenset(CUSTOMERS[:2])),
            journal=path,
            concurrency=1,
            clock=lambda: next(times),
        )
    )
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=path, clock=lambda: NOON))
    expected = JournalSummary(
        lines=5,
        customers=4,
        erased=3,
        not_found=0,
        failed=1,
        first_time=datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
        last_time=datetime(2024, 5, 1, 12, 0, 3, tzinfo=UTC),
        torn_tail=False,
    )
    assert summarize_journal(path) == expected


async def test_export_csv_one_row_per_customer(tmp_path: Path) -> None:
    """The CSV export has a header and one final-state row per customer."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=path, clock=lambda: NOON))
    out = io.StringIO()
    assert export_journal(path, out, format="csv") == 1
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[1] == [
        "",
        "user0@example.com",
        "erased",
        "tid-user0@example.com",
        "customerkey:user0@example.com",
        "1",
        "",
        "2024-05-01T12:00:00.250Z",
        "",
        "",
        "",
        "",
        "",
        "",
    ]


async def test_export_csv_neutralises_formulas(tmp_path: Path) -> None:
    """A customer key that looks like a spreadsheet formula is exported quoted."""
    path = tmp_path / "erase.jsonl"
    evil = Customer.by_key("=HYPERLINK(1)")
    await run(build_erasure_sweep([evil], FakeDelete(), journal=path))
    out = tmp_path / "audit.csv"
    export_journal(path, out, format="csv")
    [row] = csv.DictReader(io.StringIO(out.read_text()))
    assert row["customer_key"] == "'=HYPERLINK(1)"


async def test_export_json_is_an_array_of_final_records(tmp_path: Path) -> None:
    """The JSON export is an array holding each customer's last journal record."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:2], FakeDelete(frozenset(CUSTOMERS)), journal=path))
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=path))
    out = tmp_path / "audit.json"
    export_journal(path, out)
    records = orjson.loads(out.read_bytes())
    assert [(r["customer"]["key"], r["outcome"]) for r in records] == [
        ("user1@example.com", "failed"),
        ("user0@example.com", "erased"),
    ]


# -- targets, identifiers and the request sent -----------------------------------------------------


def other_target(**changes: str) -> dict[str, str]:
    return {**TARGET, **changes}


async def test_every_line_names_the_target(tmp_path: Path) -> None:
    """A sweep given a target records it on each line it writes."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:2], FakeDelete(), journal=path, target=TARGET))
    assert [TARGET, TARGET] == [line["target"] for line in lines(path)]


async def test_line_records_the_identifier_the_delete_named(tmp_path: Path) -> None:
    """A customer known by its key is journaled with the DELETE body naming it by that key."""
    path = tmp_path / "erase.jsonl"
    target = other_target(customer_key_attribute="email")
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=path, target=target))
    expected = {"identifier": {"apiName": "email", "value": "user0@example.com"}}
    assert expected == lines(path)[0]["request"]


async def test_line_records_the_tid_the_delete_named(tmp_path: Path) -> None:
    """A customer known by a TID and a key is journaled with the TID as what the DELETE sent."""
    path = tmp_path / "erase.jsonl"
    customer = Customer(tid="tid-1", key="user0@example.com")
    await run(build_erasure_sweep([customer], FakeDelete(), journal=path, target=TARGET))
    assert {"tid": "tid-1"} == lines(path)[0]["request"]


async def test_line_records_the_customer_identifiers(tmp_path: Path) -> None:
    """The customer object of a line holds its identifiers as an object."""
    path = tmp_path / "erase.jsonl"
    customer = Customer.by_identifier("email", "ann@example.com")
    await run(build_erasure_sweep([customer], FakeDelete(), journal=path, target=TARGET))
    expected = {"tid": None, "key": None, "identifiers": {"email": "ann@example.com"}}
    assert expected == lines(path)[0]["customer"]


async def test_customer_no_delete_can_name_has_a_null_request(tmp_path: Path) -> None:
    """A customer with several identifiers and no TID is journaled with a null request."""
    path = tmp_path / "erase.jsonl"
    customer = Customer(key="k@example.com", identifiers={"email": "e@example.com"})
    await run(
        build_erasure_sweep(
            [customer], FakeDelete(frozenset({customer})), journal=path, target=TARGET
        )
    )
    assert lines(path)[0]["request"] is None
    assert "failed" == lines(path)[0]["outcome"]


async def test_customers_are_matched_by_their_identifiers(tmp_path: Path) -> None:
    """On resume a customer is done only if its tid, key and identifiers all match."""
    path = tmp_path / "erase.jsonl"
    ann = Customer.by_identifier("email", "ann@example.com")
    bob = Customer.by_identifier("email", "bob@example.com")
    await run(build_erasure_sweep([ann], FakeDelete(), journal=path, target=TARGET))
    delete = FakeDelete()
    await run(build_erasure_sweep([ann, bob], delete, journal=path, target=TARGET))
    assert [bob] == delete.calls


async def test_journal_of_another_site_key_is_refused(tmp_path: Path) -> None:
    """Resuming against another site key raises JournalError naming both site keys."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=path, target=TARGET))
    sweep = build_erasure_sweep(
        CUSTOMERS[:1], FakeDelete(), journal=path, target=other_target(site_key="ONE-OTHER-0002")
    )
    with pytest.raises(JournalError) as caught:
        await run(sweep)
    assert "site_key is 'ONE-TESTTEST01-0001' in the journal, 'ONE-OTHER-0002' here" in str(
        caught.value
    )


async def test_journal_of_another_key_attribute_is_refused(tmp_path: Path) -> None:
    """A journal whose keys belong to another key attribute is refused before any delete."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=path, target=TARGET))
    delete = FakeDelete()
    sweep = build_erasure_sweep(
        CUSTOMERS, delete, journal=path, target=other_target(customer_key_attribute="email")
    )
    with pytest.raises(JournalError, match="customer_key_attribute"):
        await run(sweep)
    assert [] == delete.calls


async def test_failed_lines_of_another_target_do_not_bind_the_journal(tmp_path: Path) -> None:
    """A sweep whose deletes all failed on one host resumes on another and retries them."""
    path = tmp_path / "erase.jsonl"
    failing = FakeDelete(frozenset(CUSTOMERS[:2]))
    wrong = other_target(base_url="https://wrong.example.com")
    await run(build_erasure_sweep(CUSTOMERS[:2], failing, journal=path, target=wrong))
    delete = FakeDelete()
    await run(build_erasure_sweep(CUSTOMERS[:2], delete, journal=path, target=TARGET))
    assert CUSTOMERS[:2] == sorted(delete.calls, key=lambda c: str(c.key))


async def test_refused_journal_is_left_unchanged(tmp_path: Path) -> None:
    """Refusing a journal of another target writes nothing to it."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=path, target=TARGET))
    before = path.read_bytes()
    with pytest.raises(JournalError):
        await ErasureJournal(path, target=other_target(api_version="3.0.0")).open()
    assert before == path.read_bytes()


async def test_same_target_with_a_trailing_slash_resumes(tmp_path: Path) -> None:
    """A base URL that differs only by a trailing slash is the same target."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=path, target=TARGET))
    same = other_target(base_url=TARGET["base_url"] + "/")
    delete = FakeDelete()
    await run(build_erasure_sweep(CUSTOMERS[:2], delete, journal=path, target=same))
    assert [CUSTOMERS[1]] == delete.calls


async def test_old_journal_resumes(tmp_path: Path) -> None:
    """A journal of lines without identifiers or request skips the customers it lists as done."""
    path = tmp_path / "erase.jsonl"
    path.write_bytes(OLD_LINE)
    delete = FakeDelete()
    outcomes = await run(
        build_erasure_sweep(CUSTOMERS[:2], delete, journal=path, target=TARGET, ordered=True)
    )
    assert [CUSTOMERS[1]] == delete.calls
    assert [0, 1] == [o.attempts for o in outcomes]


async def test_old_journal_is_adopted_by_the_target(tmp_path: Path) -> None:
    """An old journal gets the sweep's target after its lines, so another target is refused."""
    path = tmp_path / "erase.jsonl"
    path.write_bytes(OLD_LINE)
    await run(build_erasure_sweep(CUSTOMERS[:2], FakeDelete(), journal=path, target=TARGET))
    with pytest.raises(JournalError, match="site_key"):
        await ErasureJournal(path, target=other_target(site_key="ONE-OTHER-0002")).open()


async def test_journal_with_a_target_opens_without_one(tmp_path: Path) -> None:
    """A sweep given no target accepts any journal; its lines have a null target."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=path, target=TARGET))
    delete = FakeDelete()
    await run(build_erasure_sweep(CUSTOMERS[:2], delete, journal=path))
    assert [CUSTOMERS[1]] == delete.calls
    assert [TARGET, None] == [line["target"] for line in lines(path)]


async def test_invalid_request_member_is_an_error(tmp_path: Path) -> None:
    """A line whose request is neither null, {tid} nor {identifier} is corrupt."""
    path = tmp_path / "erase.jsonl"
    bad = OLD_LINE.replace(b'"outcome"', b'"request":{"key":"x"},"outcome"')
    path.write_bytes(bad + OLD_LINE)
    with pytest.raises(JournalError, match="line 1"):
        await ErasureJournal(path).open()


async def test_invalid_target_member_is_an_error(tmp_path: Path) -> None:
    """A line whose target is not an object of strings is corrupt."""
    path = tmp_path / "erase.jsonl"
    bad = OLD_LINE.replace(b'"outcome"', b'"target":"eu2","outcome"')
    path.write_bytes(bad + OLD_LINE)
    with pytest.raises(JournalError, match="line 1"):
        await ErasureJournal(path).open()


async def test_summary_names_the_target(tmp_path: Path) -> None:
    """summarize_journal reports the journal's target and counts only customer lines."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:2], FakeDelete(), journal=path, target=TARGET))
    summary = summarize_journal(path)
    assert TARGET == summary.target
    assert 2 == summary.lines
    assert 2 == summary.customers


async def test_summary_of_an_old_journal_has_no_target(tmp_path: Path) -> None:
    """A journal written before targets were recorded summarises with target None."""
    path = tmp_path / "erase.jsonl"
    path.write_bytes(OLD_LINE)
    assert summarize_journal(path).target is None
    assert 1 == summarize_journal(path).erased


async def test_export_json_adds_the_target_and_the_new_fields(tmp_path: Path) -> None:
    """The JSON export gives old lines the current shape (no request, no target)."""
    path = tmp_path / "erase.jsonl"
    path.write_bytes(OLD_LINE)
    await run(build_erasure_sweep(CUSTOMERS[1:2], FakeDelete(), journal=path, target=TARGET))
    out = io.StringIO()
    export_journal(path, out)
    records = orjson.loads(out.getvalue())
    assert [
        ({"tid": None, "key": "user0@example.com", "identifiers": {}}, None, None),
        (
            {"tid": None, "key": "user1@example.com", "identifiers": {}},
            {"identifier": {"apiName": "customerkey", "value": "user1@example.com"}},
            TARGET,
        ),
    ] == [(r["customer"], r["request"], r["target"]) for r in records]


async def test_export_csv_has_identifier_request_and_target_columns(tmp_path: Path) -> None:
    """The CSV export's new columns hold the customer's identifiers, the request and the target."""
    path = tmp_path / "erase.jsonl"
    customer = Customer(tid="tid-9", identifiers={"email": "ann@example.com"})
    await run(build_erasure_sweep([customer], FakeDelete(), journal=path, target=TARGET))
    out = io.StringIO()
    export_journal(path, out, format="csv")
    [row] = csv.DictReader(io.StringIO(out.getvalue()))
    assert {
        "customer_identifiers": "email:ann@example.com",
        "request": "tid:tid-9",
        "base_url": TARGET["base_url"],
        "site_key": TARGET["site_key"],
        "customer_key_attribute": "customerkey",
        "api_version": "3.1.0",
    } == {name: row[name] for name in list(row)[8:]}


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from mxo_async import Customer, Erasure
    from mxo_async._journal import build_erasure_sweep

    journal, deletes, received, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    log = os.open(deletes, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    seen = os.open(received, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    calls = 0

    async def delete(customer):
        global calls
        calls += 1
        number = calls
        os.write(log, customer.key.encode() + b"\\n")
        await asyncio.sleep(0)
        if number == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return Erasure((customer.key,)), 1

    async def main():
        customers = (Customer.by_key(f"c{n}") for n in range(200))
        async with build_erasure_sweep(customers, delete, journal=journal, concurrency=8) as out:
            async for outcome in out:
                os.write(seen, outcome.item.key.encode() + b"\\n")

    asyncio.run(main())
    """
)


def test_sweep_resumes_after_sigkill(tmp_path: Path) -> None:
    """After a SIGKILL a re-run erases everyone, re-sending only the deletes that were in flight."""
    script = tmp_path / "sweep.py"
    script.write_text(CRASH_SCRIPT)
    journal, received = tmp_path / "erase.jsonl", tmp_path / "received.txt"
    first, second = tmp_path / "deletes1.txt", tmp_path / "deletes2.txt"

    def sweep(deletes: Path, kill_at: int) -> int:
        args = [sys.executable, str(script), str(journal), str(deletes), str(received)]
        return subprocess.run([*args, str(kill_at)], timeout=60, check=False).returncode  # noqa: S603

    assert sweep(first, kill_at=77) == -signal.SIGKILL
    journaled = {customer_key(line) for line in lines(journal)}
    assert set(received.read_text().split()) <= journaled
    assert sweep(second, kill_at=0) == 0
    resent = set(first.read_text().split()) & set(second.read_text().split())
    summary = summarize_journal(journal)
    assert 200 == summary.customers
    assert 200 == summary.erased
    assert len(resent) <= 8
    assert len(first.read_text().split()) + len(second.read_text().split()) - len(resent) == 200


# -- one sweep per journal, private exports -------------------------------------------------------


async def test_second_open_of_a_journal_in_use_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one journal object has the file open, opening it again raises JournalError."""
    monkeypatch.setattr("mxo_async._journal.LOCK_GRACE", 0.0)
    path = tmp_path / "erase.jsonl"
    async with ErasureJournal(path, target=TARGET):
        with pytest.raises(JournalError, match="in use by another sweep"):
            await ErasureJournal(path, target=TARGET).open()


async def test_journal_closed_by_its_sweep_opens_again(tmp_path: Path) -> None:
    """The lock goes with the sweep: a closed journal is opened by the next sweep."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:2], FakeDelete(), journal=path))
    outcomes = await run(build_erasure_sweep(CUSTOMERS[:2], FakeDelete(), journal=path))
    assert [0, 0] == [o.attempts for o in outcomes]


async def test_journal_locked_by_another_process_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep of a journal another process holds raises JournalError and sends nothing."""
    monkeypatch.setattr("mxo_async._journal.LOCK_GRACE", 0.0)
    path = tmp_path / "erase.jsonl"
    path.write_bytes(b"")
    # Started once, before the sweep: a blocking start is harmless here.
    holder = subprocess.Popen(  # noqa: S603, ASYNC220 - our own interpreter
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
         str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    delete = FakeDelete()
    try:
        assert holder.stdout is not None
        assert "locked\n" == holder.stdout.readline()
        with pytest.raises(JournalError, match="in use"):
            await run(build_erasure_sweep(CUSTOMERS[:1], delete, journal=path))
    finally:
        holder.communicate("", timeout=10)
    assert [] == delete.calls


async def test_journal_locked_only_briefly_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock released within the grace (a sweep of this process closing) does not refuse."""
    monkeypatch.setattr("mxo_async._journal.LOCK_GRACE", 30.0)
    path = tmp_path / "erase.jsonl"
    first = ErasureJournal(path)
    await first.open()
    second = ErasureJournal(path)
    opening = asyncio.ensure_future(second.open())
    await asyncio.sleep(0)
    await first.aclose()
    await opening
    await second.aclose()
    assert opening.exception() is None


async def test_export_file_is_private(tmp_path: Path) -> None:
    """export_journal creates its file with mode 0600: it holds the journal's identifiers."""
    journal = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=journal))
    for kind in ("json", "csv"):
        export_journal(journal, tmp_path / f"audit.{kind}", kind)
    modes = [stat.S_IMODE(os.stat(tmp_path / f"audit.{k}").st_mode) for k in ("json", "csv")]
    assert [0o600, 0o600] == modes


async def test_export_narrows_an_existing_file_to_0600(tmp_path: Path) -> None:
    """Exporting over a world-readable file leaves it readable by its owner only."""
    journal = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=journal))
    out = tmp_path / "audit.csv"
    out.write_text("old")
    out.chmod(0o644)
    export_journal(journal, out, "csv")
    assert 0o600 == stat.S_IMODE(os.stat(out).st_mode)


async def test_corrupt_line_error_names_the_journal_once(tmp_path: Path) -> None:
    """A corrupt middle line's error names the journal file and the line, once each."""
    path = tmp_path / "erase.jsonl"
    path.write_bytes(b"not json\n" + OLD_LINE)
    with pytest.raises(JournalError) as caught:
        await ErasureJournal(path).open()
    message = str(caught.value)
    assert 1 == message.count("erasure journal")
    assert message.startswith(f"erasure journal {path}: line 1 is not a valid record")
