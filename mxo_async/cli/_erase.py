"""``mxo-async erase FILE --journal J``: a resumable, audited GDPR erasure sweep."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import BinaryIO, Literal

import click
import orjson

from mxo_async import (
    AmbiguousDeliveryError,
    Customer,
    Erasure,
    FanOut,
    JournalError,
    Limits,
    MXOClient,
    MXOError,
    RetryPolicy,
    ValidationError,
    export_journal,
    summarize_journal,
)
from mxo_async._input_records import InputError, parse_customer_json, parse_customer_text
from mxo_async._verdicts import describe_error
from mxo_async._wire import delete_target

from ._deadletter import STDIN_DEAD_LETTER, DeadLetter, check_writable, default_dead_letter_path
from ._inputs import (
    CUSTOMER_FORMATS,
    CsvCustomers,
    detect_format,
    first_line,
    parse_lines,
    peek_ndjson,
)
from ._interrupt import InputStopped, Interruption
from ._lines import Line, iter_lines, open_input, open_reader
from ._progress import (
    Advance,
    BudgetWatch,
    ErrorLister,
    EventRecorder,
    client_rows,
    format_seconds,
    print_summary_table,
    progress_bar,
    stderr_console,
    stdout_console,
)
from ._status import Aborted, ExitCode, FailureWatch, Tally, exit_code, outcome_reason, plural
from ._target import Target, finish, key_attribute_option, run_command

__all__ = ["erase", "report_format"]

Parser = Callable[[str], Customer | None]
_IN_FLIGHT = (
    "interrupted while in flight: the delete may or may not have been applied "
    "(not journaled: the next run sends it again)"
)


def report_format(path: str) -> Literal["json", "csv"]:
    """``json`` or ``csv`` from the report's extension; a usage error otherwise."""
    extension = os.path.splitext(path)[1].lower()
    if extension == ".json":
        return "json"
    if extension == ".csv":
        return "csv"
    raise click.BadParameter(f"must end in .json or .csv, got {path!r}", param_hint="--report")


@click.command(short_help="Erase the customers listed in a file, with a journal.")
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
    help="Write the audit export of the journal here (.json or .csv, mode 0600).",
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
    help=f"Where failed and invalid lines are appended [default: FILE.dead-letter.ndjson; "
    f"{STDIN_DEAD_LETTER} for stdin].",
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
      NDJSON  {"customer_key": "alice@example.com", "tid": "...",
               "identifiers": {"email": "..."}}
      CSV     a header with customer_key, tid and/or id.<apiName> columns
              (others are ignored)
      text    one customer key per line; "tid:<TID>" for a TID;
              blank and # lines skipped

    A DELETE names the customer by its TID when given, else by its only identifier (the key,
    sent under --key-attribute, counts as one): a line with no TID and several is invalid. A
    customer listed again (the same DELETE) is deleted once.

    Every settled customer is appended to the journal before it is counted; running the same
    command again skips the customers already erased (or not found) and retries the failed
    ones. The journal records the target (base URL, site key, key attribute, API version) and
    is refused when it records customers as done on another one, or while another sweep uses
    it. Only MXO's CUSTOMER_NOT_FOUND answer counts a customer as done without erasing
    anything; any other error is a failure. Ctrl-C or SIGTERM stops reading and lets the
    deletes in flight settle (a second signal aborts them); run the same command again to
    continue. Exit status 0 when every customer is erased or was not found, 1 when some failed
    (they are in the dead-letter file and the journal; re-run to retry them), 3 when the run
    was aborted (journal corrupt, of another target or in use; credentials refused or not
    allowed; unknown site key; host unreachable).
    """
    if fmt is None and file != "-":
        extension = os.path.splitext(file)[1].lower()
        fmt = "text" if extension not in (".ndjson", ".jsonl", ".json", ".csv") else None
    try:
        chosen = detect_format(file, fmt, CUSTOMER_FORMATS, stdin="text")
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    kind = report_format(report) if report is not None else None
    dead_path = dead_letter or default_dead_letter_path(file)
    check_writable(dead_path, "--dead-letter")
    check_writable(journal, "--journal")
    if report is not None:
        check_writable(report, "--report")
    recorder = EventRecorder()
    policy = RetryPolicy()
    client = target.client(
        retry=policy, limits=Limits(max_connections=concurrency), on_event=recorder
    )
    with open_input(file) as (stream, total), DeadLetter(dead_path) as dead:
        job = _EraseJob(client, recorder, dead, chosen, journal, BudgetWatch(policy))
        if total is not None and chosen == "csv":
            total -= 1
        code = run_command(job.run(stream, total, concurrency))
        if report is not None and kind is not None and os.path.exists(journal):
            try:
                rows = export_journal(journal, report, kind)
            except OSError as exc:
                click.echo(f"Error: cannot write the report {report}: {exc.strerror}", err=True)
                finish(ExitCode.ABORTED)
            job.err.print(
                f"Audit report: {plural(rows, 'customer')} written to {report}",
                highlight=False,
                markup=False,
            )
    finish(code)


def _same_delete(customer: Customer, key_attribute: str) -> bytes:
    """A digest of the DELETE body that names ``customer``: equal for the same request."""
    try:
        body = delete_target(customer, key_attribute)
    except ValidationError:  # no DELETE can name it; the sweep reports it
        body = {"customer": repr(customer)}
    return hashlib.blake2b(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


class _EraseJob:
    def __init__(
        self,
        client: MXOClient,
        recorder: EventRecorder,
        dead: DeadLetter,
        fmt: str,
        journal: str,
        budget: BudgetWatch,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.dead = dead
        self.fmt = fmt
        self.journal = journal
        self.budget = budget
        self.tally = Tally()
        self.erased = 0
        self.not_found = 0
        self.duplicates = 0
        self.lines = 0
        self.handled = 0  # every line up to this one was sent, dead-lettered or skipped
        self.unsettled = 0
        self.stopped: str | None = None
        # 16-byte digests of the DELETEs sent this run, so a customer listed twice is deleted once.
        self._seen: set[bytes] = set()
        self.out = stdout_console()
        self.err = stderr_console()
        self.errors = ErrorLister(self.err)
        self.advance: Advance = lambda amount: None
        self.interrupt = Interruption(self.err)
        self.watch = FailureWatch()

    async def run(self, stream: BinaryIO, total: int | None, concurrency: int) -> ExitCode:
        started = time.perf_counter()
        pending: dict[int, tuple[Line, Customer]] = {}
        key_attribute = self.client.target["customer_key_attribute"]
        with self.interrupt:
            try:
                async with (
                    self.client,
                    open_reader(stream) as read,
                    aclosing(iter_lines(self.interrupt.reader(read))) as source,
                ):
                    lines, parse = await self._prepare(source)

                    async def customers() -> AsyncIterator[Customer]:
                        valid = parse_lines(lines, parse, self._invalid, self._skipped)
                        async with aclosing(valid) as items:
                            index = 0
                            try:
                                async for line, customer in items:
                                    if self.interrupt.stopping:
                                        return
                                    digest = _same_delete(customer, key_attribute)
                                    if digest in self._seen:
                                        self._duplicate(line)
                                        continue
                                    self._seen.add(digest)
                                    pending[index] = (line, customer)
                                    index += 1
                                    self._handle(line)
                                    yield customer
                            except InputStopped:
                                return

                    sweep = self.client.delete_customers(
                        customers(), concurrency=concurrency, journal=self.journal
                    )
                    with progress_bar(self.err, "Erasing", total) as self.advance:
                        await self._sweep(sweep, pending)
            except asyncio.CancelledError:
                if not self.interrupt.aborted:
                    raise
                self.interrupt.uncancel()
        elapsed = time.perf_counter() - started
        self.errors.finish(self.dead.path if self.dead.count else None)
        self._summary(elapsed)
        if self.stopped is not None:
            click.echo(f"Error: {self.stopped}", err=True)
            return ExitCode.ABORTED
        return self.interrupt.exit_code or exit_code(self.tally)

    async def _sweep(
        self, sweep: FanOut[Customer, Erasure], pending: dict[int, tuple[Line, Customer]]
    ) -> None:
        entered = False
        try:
            async with sweep as outcomes:
                entered = True
                async for outcome in outcomes:
                    line, customer = pending.pop(outcome.index)
                    self._settle(line, customer, outcome.error, outcome.result, outcome.attempts)
        except asyncio.CancelledError:
            if self.interrupt.aborted:  # the sweep cancelled its deletes in flight
                for line, customer in pending.values():
                    self._unsettled(line, customer)
            raise
        except (JournalError, OSError) as exc:
            if isinstance(exc, JournalError):
                message = str(exc)  # it names the journal
            else:
                message = f"erasure journal {self.journal}: {exc.strerror or exc}"
            if not entered:  # nothing was sent: the journal cannot be used
                raise Aborted(message) from None
            self.stopped = message

    async def _prepare(
        self, lines: AsyncGenerator[Line, None]
    ) -> tuple[AsyncGenerator[Line, None], Parser]:
        """The lines to parse and their parser; a usage error for an unusable start."""
        key_attribute = self.client.target["customer_key_attribute"]
        if self.fmt == "ndjson":
            try:
                checked = await peek_ndjson(lines)
            except InputError as exc:
                raise click.UsageError(str(exc)) from None
            return checked, lambda text: parse_customer_json(text, key_attribute)
        if self.fmt == "text":
            return lines, lambda text: parse_customer_text(text, key_attribute)
        header = await first_line(lines)
        if header is None:
            raise click.UsageError("the CSV input is empty (no header line)")
        self._handle(header)
        self.lines = header.number
        self.dead.header = header
        try:
            rows = CsvCustomers(header.text, key_attribute)
        except InputError as exc:
            raise click.UsageError(f"line {header.number}: {exc}") from None
        return lines, lambda text: None if rows.repeats_header(text) else rows.parse(text)

    def _settle(
        self,
        line: Line,
        customer: Customer,
        error: MXOError | None,
        result: Erasure | None,
        attempts: int,
    ) -> None:
        self.lines = max(self.lines, line.number)
        self.advance(1)
        if error is None and attempts == 0:  # the journal says it is done already
            self.tally.skipped += 1
            return
        if error is not None:
            self.budget.sample(self.client.stats)
        if self.stopped is None:
            stop = self.watch.observe(error)
            if stop is not None:
                self.stopped = f"{stop}; no line after line {self.handled:,} was sent"
                self.interrupt.stop()
        self.tally.add(error)
        if error is None:
            if result is None or result.found:
                self.erased += 1
            else:
                self.not_found += 1
            return
        reason = outcome_reason(error)
        message = describe_error(error, customer)
        self.dead.write(line, reason, message)
        self.errors.report(f"line {line.number}: {customer.masked()}: {reason}: {message}")

    def _unsettled(self, line: Line, customer: Customer) -> None:
        """A delete the abort cancelled in flight: not journaled, so the next run sends it."""
        self.lines = max(self.lines, line.number)
        self.unsettled += 1
        error = AmbiguousDeliveryError(_IN_FLIGHT)
        self.tally.add(error)
        message = describe_error(error)
        self.dead.write(line, "ambiguous", message)
        self.errors.report(f"line {line.number}: {customer.masked()}: ambiguous: {message}")

    def _handle(self, line: Line) -> None:
        self.handled = max(self.handled, line.number)

    def _invalid(self, line: Line, reason: str) -> None:
        self._handle(line)
        self.lines = max(self.lines, line.number)
        self.tally.add_invalid()
        self.advance(1)
        self.dead.write(line, "invalid", reason)
        self.errors.report(f"line {line.number}: invalid: {reason}")

    def _skipped(self, line: Line) -> None:
        self._handle(line)
        self.lines = max(self.lines, line.number)
        self.advance(1)

    def _duplicate(self, line: Line) -> None:
        self._skipped(line)
        self.duplicates += 1

    def _summary(self, elapsed: float) -> None:
        tally = self.tally
        journal = summarize_journal(self.journal) if os.path.exists(self.journal) else None
        history = "-"
        if journal is not None:
            history = (
                f"{self.journal}: {plural(journal.customers, 'customer')}, "
                f"{journal.erased:,} erased, {journal.not_found:,} not found, "
                f"{journal.failed:,} failed"
            )
        rows = [
            ("lines read", f"{max(self.lines, self.handled):,}"),
            ("erased", f"{self.erased:,}"),
            ("not found", f"{self.not_found:,} (nothing left to delete)"),
            ("skipped", f"{tally.skipped:,} (already done according to the journal)"),
            ("duplicates", f"{self.duplicates:,} (listed again: deleted once)"),
            (
                "failed",
                f"{tally.failed + tally.ambiguous + tally.unconfirmed:,} (re-run to retry them)",
            ),
            ("invalid lines", f"{tally.invalid:,}"),
            *client_rows(self.client.stats, self.recorder, elapsed, self.budget),
            ("latency", self.recorder.percentiles("delete_customer")),
            ("elapsed", format_seconds(elapsed)),
            ("journal", history),
            (
                "dead letter",
                f"{self.dead.path} ({plural(self.dead.count, 'record')} appended)"
                if self.dead.count
                else "-",
            ),
            *self._stop_rows(),
            ("result", self._result()),
        ]
        print_summary_table(self.out, "mxo-async erase", rows)

    def _stop_rows(self) -> list[tuple[str, str]]:
        """Where an interrupted or aborted run stopped, and how to continue it."""
        unsettled = (
            f"{plural(self.unsettled, 'delete')} in flight when it was aborted "
            "(dead-lettered as ambiguous, not journaled: the next run sends them again)"
            if self.unsettled
            else None
        )
        return self.interrupt.stop_rows(
            self.stopped,
            self.handled,
            unsettled,
            "run the same command again: the journal skips the customers already done",
        )

    def _result(self) -> str:
        if self.stopped is not None:
            return "ABORTED (exit status 3)"
        code = self.interrupt.exit_code
        if code is not None:
            return f"INTERRUPTED (exit status {int(code)})"
        if self.tally.all_delivered:
            return "every customer is erased"
        return "NOT every customer was erased (exit status 1)"
