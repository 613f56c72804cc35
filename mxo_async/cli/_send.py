"""``mxo-async send FILE``: stream activities from NDJSON or CSV to MXO."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import BinaryIO

import click
from rich.console import Console

from mxo_async import (
    ActivityRequest,
    AmbiguousDeliveryError,
    Delivery,
    Limits,
    MXOClient,
    MXOError,
    RejectedActivitiesError,
    RetryPolicy,
)
from mxo_async._wire import match_rejections

from ._deadletter import DeadLetter, default_dead_letter_path
from ._inputs import (
    ACTIVITY_FORMATS,
    CsvActivities,
    InputError,
    detect_format,
    first_line,
    parse_activity_json,
    parse_lines,
)
from ._lines import Line, iter_lines, open_input, open_reader
from ._progress import (
    Advance,
    ErrorLister,
    EventRecorder,
    client_rows,
    format_rate,
    format_seconds,
    progress_bar,
    summary_table,
)
from ._status import (
    Aborted,
    ExitCode,
    Tally,
    describe_error,
    exit_code,
    is_fatal,
    mask_customer,
)
from ._target import Target, finish, key_attribute_option, run_command

__all__ = ["send"]

Parser = Callable[[str], ActivityRequest | None]
# Coalescing: deliveries settled out of order wait behind the oldest; beyond this many, wait for it.
# The batcher's own bound (max_pending) is 10,000 activities, so this rarely waits.
_WINDOW = 20_000


@click.command()
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
    help="Where undelivered lines go [default: FILE.dead-letter.ndjson].",
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
) -> None:
    """Send the activities in FILE (NDJSON or CSV; '-' for stdin) to MXO.

    \b
    NDJSON, one activity per line:
      {"customer_key": "alice@example.com", "tid": "...", "identifiers": {"email": "..."},
       "touchpoint": "web://bank.com", "proposition": "mortgage", "activity_type": "view",
       "dynamic_proposition": "fixed-5y", "timestamp": "2024-05-01T12:00:00Z",
       "properties": {"campaign": "summer"},
       "device": {"appName": "BankApp", "devType": "SMARTPHONE", "osName": "IOS"}}
    or several per line: the same keys with "activities": [{"proposition": ..., ...}, ...].
    CSV: a header with customer_key, tid, touchpoint, proposition, activity_type,
    dynamic_proposition, timestamp, prop.<name> (context properties), id.<apiName>
    (identifiers) and device.<field> columns, one activity per row. customer_key, tid or an
    identifier is required; touchpoint falls back to --touchpoint. Device fields take their
    wire names (appName, devType, osName, appVer, devMfr, devModel, osVer, locLatitude,
    locLongitude, locLastUpdated, locHorzAccuracy, ipAddress, locale, pushToken) or the
    Device field names (app_name, dev_type, ...).

    The file is read as a stream. Lines that cannot be parsed, and activities that failed or are
    ambiguous (may or may not be stored), go to the dead-letter file as
    {"line", "reason", "error", "input", "time"}. Activities MXO answered but did not process
    (unknown codes, ...) are never retried: each goes to the dead-letter file with reason
    "rejected", its "code" (MXO's errorCode) and "activity" (its index in the line). Exit status
    0 only if every activity was delivered.
    """
    try:
        chosen = detect_format(file, fmt, ACTIVITY_FORMATS, stdin="ndjson")
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    recorder = EventRecorder()
    client = target.client(
        retry=RetryPolicy(retry_ambiguous=at_least_once),
        limits=Limits(max_connections=concurrency),
        on_event=recorder,
    )
    dead = DeadLetter(dead_letter or default_dead_letter_path(file))
    with open_input(file) as (stream, total), dead:
        job = _SendJob(client, recorder, dead, chosen, touchpoint)
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
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.dead = dead
        self.fmt = fmt
        self.touchpoint = touchpoint
        self.tally = Tally()
        self.lines = 0
        self.requests = 0
        self.out = Console()
        self.err = Console(stderr=True)
        self.errors = ErrorLister(self.err)
        self.advance: Advance = lambda amount: None

    async def run(
        self, stream: BinaryIO, total: int | None, concurrency: int, coalesce: bool
    ) -> ExitCode:
        started = time.perf_counter()
        async with self.client, open_reader(stream) as read, aclosing(iter_lines(read)) as lines:
            parse = await self._parser(lines)
            if total is not None and self.fmt == "csv":
                total -= 1
            with progress_bar(self.err, "Sending", total) as self.advance:
                if coalesce:
                    await self._coalesced(self._valid(lines, parse))
                else:
                    await self._fan_out(self._valid(lines, parse), concurrency)
        elapsed = time.perf_counter() - started
        self.errors.finish(self.dead.path if self.dead.count else None)
        self._summary(elapsed, coalesce)
        return exit_code(self.tally)

    async def _parser(self, lines: AsyncIterator[Line]) -> Parser:
        key_attribute = self.client.target["customer_key_attribute"]
        if self.fmt == "ndjson":
            touchpoint = self.touchpoint
            return lambda text: parse_activity_json(text, touchpoint, key_attribute)
        header = await first_line(lines)
        if header is None:
            raise click.UsageError("the CSV input is empty (no header line)")
        self.lines = header.number
        try:
            return CsvActivities(header.text, self.touchpoint, key_attribute).parse
        except InputError as exc:
            raise click.UsageError(f"line {header.number}: {exc}") from None

    def _valid(
        self, lines: AsyncGenerator[Line, None], parse: Parser
    ) -> AsyncGenerator[tuple[Line, ActivityRequest], None]:
        return parse_lines(lines, parse, self._invalid, self._skipped)

    def _skipped(self, line: Line) -> None:
        self.lines = line.number
        self.advance(1)

    async def _fan_out(
        self, valid: AsyncGenerator[tuple[Line, ActivityRequest], None], concurrency: int
    ) -> None:
        pending: dict[int, Line] = {}  # fan-out index -> its line, for the requests in flight

        async def requests() -> AsyncIterator[ActivityRequest]:
            async with aclosing(valid) as items:
                async for line, request in items:
                    pending[self.requests] = line
                    self.requests += 1
                    yield request

        async with self.client.send_activities(requests(), concurrency=concurrency) as outcomes:
            async for outcome in outcomes:
                self._settle(pending.pop(outcome.index), outcome.item, outcome.error)

    async def _coalesced(self, valid: AsyncGenerator[tuple[Line, ActivityRequest], None]) -> None:
        window: deque[tuple[Line, ActivityRequest, Delivery]] = deque()
        async with self.client.batcher() as batcher, aclosing(valid) as items:
            async for line, request in items:
                delivery = await batcher.submit(
                    request.customer,
                    request.touchpoint,
                    *request.activities,
                    properties=request.properties,
                    device=request.device,
                )
                window.append((line, request, delivery))
                if len(window) > _WINDOW:
                    with contextlib.suppress(MXOError):
                        await window[0][2]
                while window and window[0][2].done():
                    self._settle_delivery(*window.popleft())
            report = await batcher.aclose()
            self.requests = report.requests
            while window:
                self._settle_delivery(*window.popleft())

    def _settle_delivery(self, line: Line, request: ActivityRequest, delivery: Delivery) -> None:
        self._settle(line, request, delivery.exception())

    def _settle(self, line: Line, request: ActivityRequest, error: MXOError | None) -> None:
        self.lines = max(self.lines, line.number)
        self.advance(1)
        if isinstance(error, RejectedActivitiesError):
            self._rejected(line, request, error)
            return
        self.tally.add(error, len(request.activities))
        if error is None:
            return
        reason = "ambiguous" if isinstance(error, AmbiguousDeliveryError) else "failed"
        message = describe_error(error, request.customer)
        self.dead.write(line, reason, message)
        if is_fatal(error):
            raise Aborted(f"{message}; stopped at line {line.number} (no later line was sent)")
        self.errors.report(f"line {line.number}: {request.customer.masked()}: {reason}: {message}")

    def _rejected(
        self, line: Line, request: ActivityRequest, error: RejectedActivitiesError
    ) -> None:
        """Dead-letter each activity of the line that MXO did not process (never retried)."""
        customer = request.customer
        rejections = match_rejections(request.activities, error.rejected)
        self.tally.add(error, len(request.activities), len(rejections))
        for index, rejection in sorted(rejections.items()):
            message = mask_customer(rejection.message, customer) or "not processed by MXO"
            self.dead.write(line, "rejected", message, code=rejection.code, activity=index)
            self.errors.report(
                f"line {line.number}: {customer.masked()}: activity {index} rejected: "
                f"{rejection.code}: {message}"
            )

    def _invalid(self, line: Line, reason: str) -> None:
        self.lines = max(self.lines, line.number)
        self.tally.add_invalid()
        self.advance(1)
        self.dead.write(line, "invalid", reason)
        self.errors.report(f"line {line.number}: invalid: {reason}")

    def _summary(self, elapsed: float, coalesce: bool) -> None:
        tally = self.tally
        stats = self.client.stats
        requests = f"{self.requests:,}"
        if coalesce and self.requests:
            per = tally.activities / self.requests
            requests += f" (coalesced: {per:.1f} activities per request)"
        rows = [
            ("lines read", f"{self.lines:,}"),
            ("requests", requests),
            (
                "activities delivered",
                f"{tally.activities_delivered:,} "
                f"({format_rate(tally.activities_delivered, elapsed, 'activities')})",
            ),
            (
                "failed",
                f"{tally.failed:,} lines ({tally.activities_failed:,} activities, not stored)",
            ),
            (
                "rejected",
                f"{tally.activities_rejected:,} activities on {tally.rejected:,} lines "
                "(MXO did not process them: not stored, never retried)",
            ),
            (
                "ambiguous",
                f"{tally.ambiguous:,} lines ({tally.activities_ambiguous:,} activities, "
                "may or may not be stored)",
            ),
            ("invalid lines", f"{tally.invalid:,}"),
            *client_rows(stats, self.recorder, elapsed),
            ("latency", self.recorder.percentiles("send_activity")),
            ("elapsed", format_seconds(elapsed)),
            (
                "dead letter",
                f"{self.dead.path} ({self.dead.count:,} records)" if self.dead.count else "-",
            ),
            (
                "result",
                "everything was delivered"
                if tally.all_delivered
                else "NOT everything was delivered (exit status 1)",
            ),
        ]
        self.out.print(summary_table("mxo-async send", rows))
