"""``mxo-async erase FILE --journal J``: a resumable, audited GDPR erasure sweep."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import BinaryIO, Literal

import click
from rich.console import Console

from mxo_async import (
    Customer,
    JournalError,
    Limits,
    MXOClient,
    MXOError,
    export_journal,
    summarize_journal,
)

from ._deadletter import DeadLetter, default_dead_letter_path
from ._inputs import (
    CUSTOMER_FORMATS,
    CsvCustomers,
    InputError,
    detect_format,
    first_line,
    parse_customer_json,
    parse_customer_text,
    parse_lines,
)
from ._lines import Line, iter_lines, open_input, open_reader
from ._progress import (
    Advance,
    ErrorLister,
    EventRecorder,
    client_rows,
    format_seconds,
    progress_bar,
    summary_table,
)
from ._status import Aborted, ExitCode, Tally, describe_error, exit_code, is_fatal
from ._target import Target, finish, key_attribute_option, run_command

__all__ = ["erase", "report_format"]

Parser = Callable[[str], Customer | None]


def report_format(path: str) -> Literal["json", "csv"]:
    """``json`` or ``csv`` from the report's extension; a usage error otherwise."""
    extension = os.path.splitext(path)[1].lower()
    if extension == ".json":
        return "json"
    if extension == ".csv":
        return "csv"
    raise click.BadParameter(f"must end in .json or .csv, got {path!r}", param_hint="--report")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--journal",
    required=True,
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help="Erasure journal (JSON lines): re-running with it skips customers already erased.",
)
@click.option(
    "--report",
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help="Write the audit export of the journal here (.json or .csv).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=16,
    show_default=True,
    help="Deletes in flight at most.",
)
@click.option(
    "--dead-letter",
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help="Where failed and invalid lines go [default: FILE.dead-letter.ndjson].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(CUSTOMER_FORMATS),
    help="Input format [default: .ndjson/.jsonl/.json, .csv, else text].",
)
@key_attribute_option
@click.pass_obj
def erase(
    target: Target,
    file: str,
    journal: str,
    report: str | None,
    concurrency: int,
    dead_letter: str | None,
    fmt: str | None,
) -> None:
    """Erase (GDPR) every customer listed in FILE ('-' for stdin), one DELETE per customer.

    \b
    FILE holds one customer per line:
      NDJSON  {"customer_key": "alice@example.com", "tid": "...", "identifiers": {"email": "..."}}
      CSV     a header with customer_key, tid and/or id.<apiName> columns (others are ignored)
      text    one customer key per line; "tid:<TID>" for a TID; blank and # lines skipped
    A DELETE names the customer by its TID when given, else by its only identifier (the key,
    sent under --key-attribute, counts as one): a line with no TID and several is invalid.

    Every settled customer is appended to the journal before it is counted; running the same
    command again skips the customers already erased (or not found) and retries the failed
    ones. The journal records the target (base URL, site key, key attribute, API version) and
    is refused against another one. Only MXO's CUSTOMER_NOT_FOUND answer counts a customer as
    done without erasing anything; any other error is a failure. Exit status 0 when every
    customer is erased or was not found, 1 when some failed (they are in the dead-letter file
    and the journal; re-run to retry them), 3 when the journal is corrupt or of another target,
    the credentials are refused or not allowed, or the site key is unknown.
    """
    if fmt is None and file != "-":
        extension = os.path.splitext(file)[1].lower()
        fmt = "text" if extension not in (".ndjson", ".jsonl", ".json", ".csv") else None
    try:
        chosen = detect_format(file, fmt, CUSTOMER_FORMATS, stdin="text")
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    kind = report_format(report) if report is not None else None
    recorder = EventRecorder()
    client = target.client(limits=Limits(max_connections=concurrency), on_event=recorder)
    dead = DeadLetter(dead_letter or default_dead_letter_path(file))
    with open_input(file) as (stream, total), dead:
        job = _EraseJob(client, recorder, dead, chosen, journal)
        code = run_command(job.run(stream, total, concurrency))
        if report is not None and kind is not None and os.path.exists(journal):
            try:
                rows = export_journal(journal, report, kind)
            except OSError as exc:
                click.echo(f"Error: cannot write the report {report}: {exc.strerror}", err=True)
                finish(ExitCode.ABORTED)
            job.err.print(f"Audit report: {rows:,} customers written to {report}", highlight=False)
    finish(code)


class _EraseJob:
    def __init__(
        self, client: MXOClient, recorder: EventRecorder, dead: DeadLetter, fmt: str, journal: str
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.dead = dead
        self.fmt = fmt
        self.journal = journal
        self.tally = Tally()
        self.erased = 0
        self.not_found = 0
        self.lines = 0
        self.out = Console()
        self.err = Console(stderr=True)
        self.errors = ErrorLister(self.err)
        self.advance: Advance = lambda amount: None

    async def run(self, stream: BinaryIO, total: int | None, concurrency: int) -> ExitCode:
        started = time.perf_counter()
        pending: dict[int, Line] = {}
        async with self.client, open_reader(stream) as read, aclosing(iter_lines(read)) as lines:
            parse = await self._parser(lines)
            if total is not None and self.fmt == "csv":
                total -= 1

            async def customers() -> AsyncIterator[Customer]:
                valid = parse_lines(lines, parse, self._invalid, self._skipped)
                async with aclosing(valid) as items:
                    index = 0
                    async for line, customer in items:
                        pending[index] = line
                        index += 1
                        yield customer

            sweep = self.client.delete_customers(
                customers(), concurrency=concurrency, journal=self.journal
            )
            with progress_bar(self.err, "Erasing", total) as self.advance:
                try:
                    async with sweep as outcomes:
                        async for outcome in outcomes:
                            line = pending.pop(outcome.index)
                            self._settle(
                                line, outcome.item, outcome.error, outcome.result, outcome.attempts
                            )
                except JournalError as exc:
                    raise Aborted(f"erasure journal {self.journal}: {exc}") from None
                except OSError as exc:
                    raise Aborted(f"erasure journal {self.journal}: {exc.strerror}") from None
        elapsed = time.perf_counter() - started
        self.errors.finish(self.dead.path if self.dead.count else None)
        self._summary(elapsed)
        return exit_code(self.tally)

    async def _parser(self, lines: AsyncIterator[Line]) -> Parser:
        key_attribute = self.client.target["customer_key_attribute"]
        if self.fmt == "ndjson":
            return lambda text: parse_customer_json(text, key_attribute)
        if self.fmt == "text":
            return lambda text: parse_customer_text(text, key_attribute)
        header = await first_line(lines)
        if header is None:
            raise click.UsageError("the CSV input is empty (no header line)")
        self.lines = header.number
        try:
            return CsvCustomers(header.text, key_attribute).parse
        except InputError as exc:
            raise click.UsageError(f"line {header.number}: {exc}") from None

    def _settle(
        self,
        line: Line,
        customer: Customer,
        error: MXOError | None,
        result: object,
        attempts: int,
    ) -> None:
        self.lines = max(self.lines, line.number)
        self.advance(1)
        if error is None and attempts == 0:  # the journal says it is done already
            self.tally.skipped += 1
            return
        self.tally.add(error)
        if error is None:
            if getattr(result, "found", True):
                self.erased += 1
            else:
                self.not_found += 1
            return
        message = describe_error(error, customer)
        self.dead.write(line, "failed", message)
        if is_fatal(error):
            raise Aborted(f"{message}; stopped at line {line.number}")
        self.errors.report(f"line {line.number}: {customer.masked()}: failed: {message}")

    def _invalid(self, line: Line, reason: str) -> None:
        self.lines = max(self.lines, line.number)
        self.tally.add_invalid()
        self.advance(1)
        self.dead.write(line, "invalid", reason)
        self.errors.report(f"line {line.number}: invalid: {reason}")

    def _skipped(self, line: Line) -> None:
        self.lines = max(self.lines, line.number)
        self.advance(1)

    def _summary(self, elapsed: float) -> None:
        tally = self.tally
        journal = summarize_journal(self.journal) if os.path.exists(self.journal) else None
        history = "-"
        if journal is not None:
            history = (
                f"{self.journal}: {journal.customers:,} customers, {journal.erased:,} erased, "
                f"{journal.not_found:,} not found, {journal.failed:,} failed"
            )
        rows = [
            ("lines read", f"{self.lines:,}"),
            ("erased", f"{self.erased:,}"),
            ("not found", f"{self.not_found:,} (nothing left to delete)"),
            ("skipped", f"{tally.skipped:,} (already done according to the journal)"),
            ("failed", f"{tally.failed + tally.ambiguous:,} (re-run to retry them)"),
            ("invalid lines", f"{tally.invalid:,}"),
            *client_rows(self.client.stats, self.recorder, elapsed),
            ("latency", self.recorder.percentiles("delete_customer")),
            ("elapsed", format_seconds(elapsed)),
            ("journal", history),
            (
                "dead letter",
                f"{self.dead.path} ({self.dead.count:,} records)" if self.dead.count else "-",
            ),
            (
                "result",
                "every customer is erased"
                if tally.all_delivered
                else "NOT every customer was erased (exit status 1)",
            ),
        ]
        self.out.print(summary_table("mxo-async erase", rows))
