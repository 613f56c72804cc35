"""``mxo-async send FILE``: stream activities from NDJSON or CSV to MXO."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import BinaryIO

import click

from mxo_async import (
    ActivityRequest,
    ActivityResult,
    AmbiguousDeliveryError,
    Batcher,
    Delivery,
    Limits,
    MXOClient,
    MXOError,
    RejectedActivitiesError,
    RetryPolicy,
)
from mxo_async._input_records import InputError, parse_activity_json
from mxo_async._verdicts import describe_error, describe_rejection
from mxo_async._wire import match_rejections

from ._deadletter import STDIN_DEAD_LETTER, DeadLetter, check_writable, default_dead_letter_path
from ._inputs import (
    ACTIVITY_FORMATS,
    CsvActivities,
    detect_format,
    first_line,
    parse_lines,
    peek_ndjson,
)
from ._interrupt import InputStopped, Interruption, NotSent
from ._lines import Line, iter_lines, open_input, open_reader
from ._progress import (
    Advance,
    BudgetWatch,
    ErrorLister,
    EventRecorder,
    client_rows,
    format_rate,
    format_seconds,
    print_summary_table,
    progress_bar,
    stderr_console,
    stdout_console,
)
from ._status import ExitCode, FailureWatch, Tally, exit_code, outcome_reason, plural
from ._target import Target, finish, key_attribute_option, run_command

__all__ = ["send"]

Parser = Callable[[str], ActivityRequest | None]
Valid = AsyncGenerator[tuple[Line, ActivityRequest], None]
# Coalescing: deliveries settled out of order wait behind the oldest; beyond this many, wait for it.
# The batcher's own bound (max_pending) is 10,000 activities, so this rarely waits.
_WINDOW = 20_000
_IN_FLIGHT = "interrupted while in flight: it may or may not have been stored"


@click.command(short_help="Send the activities of an NDJSON or CSV file (or stdin).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--touchpoint", metavar="URI", help="Touchpoint for lines that do not name one.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=64,
    show_default=True,
    help="Requests in flight at most.",
)
@click.option(
    "--coalesce",
    is_flag=True,
    help="Merge activities of the same customer context into one request (the batcher).",
)
@click.option(
    "--dead-letter",
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help=f"Where undelivered lines are appended [default: FILE.dead-letter.ndjson; "
    f"{STDIN_DEAD_LETTER} for stdin].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(ACTIVITY_FORMATS),
    help="Input format [default: from the extension; ndjson for '-'].",
)
@click.option(
    "--at-least-once",
    is_flag=True,
    help="Also retry requests that may already have been applied (no ambiguous outcomes, "
    "but a timeout or reset can store an activity twice).",
)
@click.option(
    "--skip",
    type=click.IntRange(0),
    default=0,
    metavar="N",
    help="Do not send the first N lines (continue an interrupted run: its summary gives N).",
)
@key_attribute_option
@click.pass_obj
def send(
    target: Target,
    file: str,
    touchpoint: str | None,
    concurrency: int,
    coalesce: bool,
    dead_letter: str | None,
    fmt: str | None,
    at_least_once: bool,
    skip: int,
) -> None:
    """Send the activities in FILE (NDJSON or CSV; '-' for stdin) to MXO.

    \b
    NDJSON, one activity per line:
      {"customer_key": "alice@example.com", "tid": "...",
       "identifiers": {"email": "alice@example.com"},
       "touchpoint": "web://bank.com", "proposition": "mortgage",
       "activity_type": "view", "dynamic_proposition": "fixed-5y",
       "timestamp": "2024-05-01T12:00:00Z",
       "properties": {"campaign": "summer"},
       "device": {"appName": "BankApp", "devType": "SMARTPHONE",
                  "osName": "IOS"}}
    or several per line: the same keys with
      "activities": [{"proposition": ..., "activity_type": ...}, ...].

    CSV: a header with customer_key, tid, touchpoint, proposition, activity_type,
    dynamic_proposition, timestamp, prop.<name> (context properties), id.<apiName>
    (identifiers) and device.<field> columns, one activity per row; a row equal to the header
    is skipped. customer_key, tid or an identifier is required; touchpoint falls back to
    --touchpoint. Device fields take their wire names (appName, devType, osName, appVer,
    devMfr, devModel, osVer, locLatitude, locLongitude, locLastUpdated, locHorzAccuracy,
    ipAddress, locale, pushToken) or the Device field names (app_name, dev_type, ...).

    The file is read as a stream. Lines that cannot be parsed, and lines whose request failed
    (not stored), is ambiguous (may or may not be stored) or unconfirmed (stored, but MXO's
    answer could not be read), are appended to the dead-letter file (across runs) as {"line",
    "reason", "error", "input", "time"}; for CSV input a "header" record comes first, so
    `jq -r .input DEAD_LETTER` rebuilds a file this command reads. Activities MXO answered but did not process (unknown
    codes, ...) are never retried: each goes to the dead-letter file with reason "rejected",
    its "code" (MXO's errorCode) and "activity" (its index in the line).

    Ctrl-C or SIGTERM stops reading: the requests in flight settle, the summary names the
    first line not sent and the --skip that continues from it; a second signal aborts them
    (dead-lettered as ambiguous). Exit status 0 only if every activity was delivered.
    """
    try:
        chosen = detect_format(file, fmt, ACTIVITY_FORMATS, stdin="ndjson")
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    dead_path = dead_letter or default_dead_letter_path(file)
    check_writable(dead_path, "--dead-letter")
    recorder = EventRecorder()
    policy = RetryPolicy(retry_ambiguous=at_least_once)
    client = target.client(
        retry=policy, limits=Limits(max_connections=concurrency), on_event=recorder
    )
    with open_input(file) as (stream, total), DeadLetter(dead_path) as dead:
        job = _SendJob(client, recorder, dead, chosen, touchpoint, BudgetWatch(policy), skip)
        if total is not None and chosen == "csv":
            total -= 1
        code = run_command(job.run(stream, total, concurrency, coalesce))
    finish(code)


class _SendJob:
    def __init__(
        self,
        client: MXOClient,
        recorder: EventRecorder,
        dead: DeadLetter,
        fmt: str,
        touchpoint: str | None,
        budget: BudgetWatch,
        skip: int,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.dead = dead
        self.fmt = fmt
        self.touchpoint = touchpoint
        self.budget = budget
        self.skip = skip
        self.tally = Tally()
        self.lines = 0  # the highest line number seen settled
        self.handled = 0  # every line up to this one was sent, dead-lettered or skipped
        self.skipped = 0  # lines skipped by --skip
        self.requests = 0
        self.unsettled = 0  # items still in flight when the command was aborted
        self.stopped: str | None = None  # why the run stopped early (exit status 3)
        self.out = stdout_console()
        self.err = stderr_console()
        self.errors = ErrorLister(self.err)
        self.advance: Advance = lambda amount: None
        self.interrupt = Interruption(self.err)
        self.watch = FailureWatch()
        self._sending: set[asyncio.Task[object]] = set()
        self._sends_aborted = False

    async def run(
        self, stream: BinaryIO, total: int | None, concurrency: int, coalesce: bool
    ) -> ExitCode:
        started = time.perf_counter()
        with self.interrupt:
            try:
                async with (
                    self.client,
                    open_reader(stream) as read,
                    aclosing(iter_lines(self.interrupt.reader(read))) as source,
                ):
                    lines, parse = await self._prepare(source)
                    valid = parse_lines(lines, parse, self._invalid, self._skipped)
                    with progress_bar(self.err, "Sending", total) as self.advance:
                        if coalesce:
                            await self._coalesced(valid, concurrency)
                        else:
                            await self._fan_out(valid, concurrency)
            except asyncio.CancelledError:
                if not self.interrupt.aborted:
                    raise
                self.interrupt.uncancel()
        elapsed = time.perf_counter() - started
        self.errors.finish(self.dead.path if self.dead.count else None)
        self._summary(elapsed, coalesce)
        if self.stopped is not None:
            click.echo(f"Error: {self.stopped}", err=True)
            return ExitCode.ABORTED
        return self.interrupt.exit_code or exit_code(self.tally)

    async def _prepare(
        self, lines: AsyncGenerator[Line, None]
    ) -> tuple[AsyncGenerator[Line, None], Parser]:
        """The lines to parse and their parser; a usage error for an unusable start."""
        key_attribute = self.client.target["customer_key_attribute"]
        if self.fmt == "ndjson":
            touchpoint = self.touchpoint
            try:
                checked = await peek_ndjson(lines)
            except InputError as exc:
                raise click.UsageError(str(exc)) from None
            return checked, lambda text: parse_activity_json(text, touchpoint, key_attribute)
        header = await first_line(lines)
        if header is None:
            raise click.UsageError("the CSV input is empty (no header line)")
        self._handle(header)
        self.dead.header = header
        try:
            rows = CsvActivities(header.text, self.touchpoint, key_attribute)
        except InputError as exc:
            raise click.UsageError(f"line {header.number}: {exc}") from None
        return lines, lambda text: None if rows.repeats_header(text) else rows.parse(text)

    async def _requests(self, valid: Valid) -> AsyncGenerator[tuple[Line, ActivityRequest], None]:
        """The usable lines, until the input ends or the intake stops."""
        async with aclosing(valid) as items:
            try:
                async for line, request in items:
                    if self.interrupt.stopping:
                        return
                    if line.number <= self.skip:
                        self._skipped_by_option(line)
                        continue
                    yield line, request
            except InputStopped:
                return

    async def _fan_out(self, valid: Valid, concurrency: int) -> None:
        pending: dict[int, tuple[Line, ActivityRequest]] = {}  # fan-out index -> in flight

        async def requests() -> AsyncIterator[ActivityRequest]:
            async with aclosing(self._requests(valid)) as items:
                async for line, request in items:
                    pending[self.requests] = (line, request)
                    self.requests += 1
                    self._handle(line)
                    yield request

        try:
            async with self.client.send_activities(requests(), concurrency=concurrency) as out:
                async for outcome in out:
                    line, request = pending.pop(outcome.index)
                    self._settle(line, request, outcome.error)
        except asyncio.CancelledError:
            if self.interrupt.aborted:  # the fan-out cancelled its calls in flight on the way out
                for line, request in pending.values():
                    self._unsettled(line, request, AmbiguousDeliveryError(_IN_FLIGHT))
            raise

    async def _coalesced(self, valid: Valid, concurrency: int) -> None:
        window: deque[tuple[Line, ActivityRequest, Delivery]] = deque()
        # At most as many requests as the client may have in flight: the others wait unsent in
        # the batcher, so an abort can tell them (not sent) from those in flight (ambiguous).
        batcher = Batcher(self._send, max_concurrent_requests=concurrency, on_event=self.recorder)
        async with batcher:
            try:
                async with aclosing(self._requests(valid)) as items:
                    async for line, request in items:
                        delivery = await batcher.submit(
                            request.customer,
                            request.touchpoint,
                            *request.activities,
                            properties=request.properties,
                            device=request.device,
                        )
                        self._handle(line)
                        window.append((line, request, delivery))
                        if len(window) > _WINDOW:
                            with contextlib.suppress(MXOError):
                                await window[0][2]
                        while window and window[0][2].done():
                            self._settle_delivery(*window.popleft())
                report = await batcher.aclose()
            except asyncio.CancelledError:
                if not self.interrupt.aborted:
                    raise
                # Abort: what settled before it is reported as usual; then the requests in
                # flight are cancelled (ambiguous), the buffers not yet sent fail at once
                # (NotSent), and the rest of the deliveries settle that way.
                cut_short = [entry for entry in window if not entry[2].done()]
                for entry in window:
                    if entry[2].done():
                        self._settle_delivery(*entry)
                self._abort_sends()
                self.interrupt.uncancel()
                report = await batcher.aclose()
                self.requests = report.requests
                for entry in cut_short:
                    self._settle_delivery(*entry, aborted=True)
                raise
            self.requests = report.requests
            while window:
                self._settle_delivery(*window.popleft())

    async def _send(self, request: ActivityRequest) -> ActivityResult:
        """The batcher's send: the client's, cancellable by an abort."""
        if self._sends_aborted:
            raise NotSent("aborted before it was sent (certainly not stored)")
        task = asyncio.current_task()
        assert task is not None
        self._sending.add(task)
        try:
            return await self.client.send_request(request)
        finally:
            self._sending.discard(task)

    def _abort_sends(self) -> None:
        self._sends_aborted = True
        for task in self._sending:
            task.cancel()

    def _settle_delivery(
        self, line: Line, request: ActivityRequest, delivery: Delivery, aborted: bool = False
    ) -> None:
        error = delivery.exception()
        if aborted and isinstance(error, AmbiguousDeliveryError | NotSent):
            self._unsettled(line, request, error)
        else:
            self._settle(line, request, error)

    def _settle(self, line: Line, request: ActivityRequest, error: MXOError | None) -> None:
        self.lines = max(self.lines, line.number)
        self.advance(1)
        if error is not None:
            self.budget.sample(self.client.stats)
        if self.stopped is None:
            stop = self.watch.observe(error)
            if stop is not None:
                self.stopped = f"{stop}; no line after line {self.handled:,} was sent"
                self.interrupt.stop()
        if isinstance(error, RejectedActivitiesError):
            self._rejected(line, request, error)
            return
        self.tally.add(error, len(request.activities))
        if error is None:
            return
        reason = outcome_reason(error)
        message = describe_error(error, request.customer)
        self.dead.write(line, reason, message)
        self.errors.report(f"line {line.number}: {request.customer.masked()}: {reason}: {message}")

    def _unsettled(self, line: Line, request: ActivityRequest, error: MXOError) -> None:
        """An item the abort cut short: ambiguous if it was in flight, failed if never sent."""
        self.lines = max(self.lines, line.number)
        self.unsettled += 1
        self.tally.add(error, len(request.activities))
        reason = outcome_reason(error)
        message = describe_error(error)
        self.dead.write(line, reason, message)
        self.errors.report(f"line {line.number}: {request.customer.masked()}: {reason}: {message}")

    def _rejected(
        self, line: Line, request: ActivityRequest, error: RejectedActivitiesError
    ) -> None:
        """Dead-letter each activity of the line that MXO did not process (never retried)."""
        customer = request.customer
        rejections = match_rejections(request.activities, error.rejected)
        self.tally.add(error, len(request.activities), len(rejections))
        for index, rejection in sorted(rejections.items()):
            message = describe_rejection(rejection, customer)
            self.dead.write(line, "rejected", message, code=rejection.code, activity=index)
            self.errors.report(
                f"line {line.number}: {customer.masked()}: activity {index} rejected: "
                f"{rejection.code}: {message}"
            )

    def _handle(self, line: Line) -> None:
        self.handled = max(self.handled, line.number)

    def _invalid(self, line: Line, reason: str) -> None:
        self._handle(line)
        if line.number <= self.skip:
            self._skipped_by_option(line)
            return
        self.lines = max(self.lines, line.number)
        self.tally.add_invalid()
        self.advance(1)
        self.dead.write(line, "invalid", reason)
        self.errors.report(f"line {line.number}: invalid: {reason}")

    def _skipped(self, line: Line) -> None:
        self._handle(line)
        self.lines = max(self.lines, line.number)
        self.advance(1)

    def _skipped_by_option(self, line: Line) -> None:
        self._handle(line)
        self.lines = max(self.lines, line.number)
        self.skipped += 1
        self.advance(1)

    def _summary(self, elapsed: float, coalesce: bool) -> None:
        tally = self.tally
        stats = self.client.stats
        requests = f"{self.requests:,}"
        if coalesce and self.requests:
            per = tally.activities / self.requests
            requests += f" (coalesced: {per:.1f} activities per request)"
        delivered = tally.activities_delivered
        rows = [
            ("lines read", f"{max(self.lines, self.handled):,}"),
            ("requests", requests),
            (
                "activities delivered",
                f"{delivered:,} ({format_rate(delivered, elapsed, 'activities')})",
            ),
            (
                "failed",
                f"{plural(tally.failed, 'line')} "
                f"({plural(tally.activities_failed, 'activity', 'activities')}, not stored)",
            ),
            (
                "rejected",
                f"{plural(tally.activities_rejected, 'activity', 'activities')} on "
                f"{plural(tally.rejected, 'line')} "
                "(MXO did not process them: not stored, never retried)",
            ),
            (
                "ambiguous",
                f"{plural(tally.ambiguous, 'line')} "
                f"({plural(tally.activities_ambiguous, 'activity', 'activities')}, "
                "may or may not be stored)",
            ),
            (
                "unconfirmed",
                f"{plural(tally.unconfirmed, 'line')} "
                f"({plural(tally.activities_unconfirmed, 'activity', 'activities')}: stored, "
                "but MXO's answer could not be read; do not send them again)",
            ),
            ("invalid lines", f"{tally.invalid:,}"),
        ]
        if self.skip:
            rows.append(("skipped", f"{plural(self.skipped, 'line')} (--skip {self.skip})"))
        rows += [
            *client_rows(stats, self.recorder, elapsed, self.budget),
            ("latency", self.recorder.percentiles("send_activity")),
            ("elapsed", format_seconds(elapsed)),
            (
                "dead letter",
                f"{self.dead.path} ({plural(self.dead.count, 'record')} appended)"
                if self.dead.count
                else "-",
            ),
            *self._stop_rows(),
            ("result", self._result()),
        ]
        print_summary_table(self.out, "mxo-async send", rows)

    def _stop_rows(self) -> list[tuple[str, str]]:
        """Where an interrupted or aborted run stopped, and how to continue it."""
        unsettled = (
            f"{plural(self.unsettled, 'line')} had not settled when it was aborted "
            "(dead-lettered: ambiguous if in flight, failed if never sent)"
            if self.unsettled
            else None
        )
        return self.interrupt.stop_rows(
            self.stopped,
            self.handled,
            unsettled,
            f"run the same command with --skip {self.handled} "
            f"(the first line not sent is line {self.handled + 1:,})",
        )

    def _result(self) -> str:
        if self.stopped is not None:
            return "ABORTED (exit status 3)"
        code = self.interrupt.exit_code
        if code is not None:
            return f"INTERRUPTED (exit status {int(code)})"
        if self.tally.all_delivered:
            return "everything was delivered"
        return "NOT everything was delivered (exit status 1)"
