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


async def test_line_format(tmp_path: Path) -> None:
    """A settled customer is journaled as one JSON line with the documented fields."""
    journal = tmp_path / "erase.jsonl"
    sweep = build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=journal, clock=lambda: NOON)
    await run(sweep)
    expected = {
        "customer": {"tid": None, "key": "user0@example.com"},
        "outcome": "erased",
        "tids": ["tid-user0@example.com"],
        "identifiers": [{"apiName": "customerkey", "value": "user0@example.com"}],
        "attempts": 1,
        "error": None,
        "time": "2024-05-01T12:00:00.250Z",
    }
    assert lines(journal) == [expected]


async def test_failed_line_names_the_error(tmp_path: Path) -> None:
    """A failed customer's line says failed, with the error type and message."""
    journal = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(frozenset(CUSTOMERS)), journal=journal))
    [line] = lines(journal)
    assert (line["outcome"], line["error"], line["attempts"], line["tids"]) == (
        "failed",
        "MXOError: server down",
        3,
        [],
    )


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
    assert (outcome.result, outcome.attempts) == (erasure_for(CUSTOMERS[0]), 0)
    assert (sweep.progress.skipped, sweep.progress.started) == (1, 0)


async def test_last_state_wins(tmp_path: Path) -> None:
    """A customer that failed, then was erased, counts as done on load."""
    path = tmp_path / "erase.jsonl"
    await run(build_erasure_sweep(CUSTOMERS[:2], FakeDelete(frozenset(CUSTOMERS)), journal=path))
    await run(build_erasure_sweep(CUSTOMERS[:1], FakeDelete(), journal=path))
    async with ErasureJournal(path) as journal:
        assert (journal.done_count, journal.failed_count) == (1, 1)


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
    assert (delete.calls, len(lines(path))) == ([CUSTOMERS[2]], 3)


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
    journaled = {line["customer"]["key"] for line in lines(journal)}  # type: ignore[index]
    assert set(received.read_text().split()) <= journaled
    assert sweep(second, kill_at=0) == 0
    resent = set(first.read_text().split()) & set(second.read_text().split())
    summary = summarize_journal(journal)
    assert (summary.customers, summary.erased) == (200, 200)
    assert len(resent) <= 8
    assert len(first.read_text().split()) + len(second.read_text().split()) - len(resent) == 200
