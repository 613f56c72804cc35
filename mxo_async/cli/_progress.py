"""What the user sees: progress bars on stderr, latency percentiles and summary tables.

Results (summaries, JSON) go to stdout; progress bars and per-item errors go to stderr, so
``mxo-async structure ... > out.json`` and log capture both stay clean.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeAlias

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mxo_async import ClientStats, Event, ResponseReceived, RetryPolicy, RetryScheduled

from ._status import plural

__all__ = [
    "Advance",
    "BudgetWatch",
    "ErrorLister",
    "EventRecorder",
    "LatencyHistogram",
    "client_rows",
    "format_rate",
    "format_seconds",
    "print_summary_table",
    "progress_bar",
    "stderr_console",
    "stdout_console",
    "summary_table",
]

# Log-spaced buckets 2% wide: percentiles within ~1% of the truth in constant memory, however
# many requests a long ingestion makes.
_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)
_FLOOR = 1e-6  # seconds; anything faster lands in bucket 0

Advance: TypeAlias = Callable[[int], None]


def stderr_console() -> Console:
    """The console for progress, per-item errors and notes: a line is never wrapped (a
    terminal folds it itself; a log file or a pipe gets it whole)."""
    return Console(stderr=True, soft_wrap=True)


def stdout_console() -> Console:
    """The console for results and summaries."""
    return Console(soft_wrap=True)


class LatencyHistogram:
    """Counts durations in log-spaced buckets and answers percentiles."""

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        """Record one duration in seconds."""
        bucket = 0 if seconds <= _FLOOR else int(math.log(seconds / _FLOOR) / _LOG_GROWTH) + 1
        self._buckets[bucket] += 1
        self.count += 1
        self.max = max(self.max, seconds)

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) in seconds, or None when nothing was recorded."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                if bucket == 0:
                    return _FLOOR
                # The geometric middle of the bucket, never above the largest value seen.
                middle: float = _FLOOR * math.exp((bucket - 0.5) * _LOG_GROWTH)
                return min(middle, self.max)
        return self.max  # pragma: no cover - rank <= count always finds a bucket


class EventRecorder:
    """An ``on_event`` handler: response latencies per operation and retry reasons."""

    def __init__(self) -> None:
        self.latency: dict[str, LatencyHistogram] = {}
        self.retry_reasons: Counter[str] = Counter()

    def __call__(self, event: Event) -> None:
        if isinstance(event, ResponseReceived):
            histogram = self.latency.get(event.operation)
            if histogram is None:
                histogram = self.latency[event.operation] = LatencyHistogram()
            histogram.add(event.elapsed)
        elif isinstance(event, RetryScheduled):
            self.retry_reasons[event.reason] += 1

    def percentiles(self, operation: str) -> str:
        """``p50 1.2 ms · p90 3.4 ms · p99 9.9 ms`` for ``operation`` (``-`` when none)."""
        histogram = self.latency.get(operation)
        if histogram is None or not histogram.count:
            return "-"
        return " · ".join(
            f"p{q} {format_seconds(histogram.percentile(q) or 0.0)}" for q in (50, 90, 99)
        )


def format_seconds(seconds: float) -> str:
    """``850 µs``, ``12.3 ms`` or ``1.50 s``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def format_rate(count: int, seconds: float, unit: str) -> str:
    """``1,234/s`` style throughput (``-`` for an empty or instant run)."""
    if count == 0 or seconds <= 0:
        return "-"
    return f"{count / seconds:,.0f} {unit}/s"


@contextmanager
def progress_bar(console: Console, description: str, total: int | None) -> Iterator[Advance]:
    """A progress bar on ``console``; yields ``advance(n)``. Hidden unless it is a terminal."""
    columns = (
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=total)

        def advance(amount: int) -> None:
            progress.advance(task, amount)

        yield advance


def summary_table(title: str, rows: Iterable[tuple[str, str]]) -> Table:
    """A two-column table: what, how much (a long value folds inside its column)."""
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    return table


def print_summary_table(console: Console, title: str, rows: Iterable[tuple[str, str]]) -> None:
    """Print a summary: a table on a terminal, else one unwrapped ``name  value`` line per row
    (a redirected summary is read by programs and logs: no line is ever cut in two)."""
    rows = list(rows)
    if console.is_terminal:
        console.print(summary_table(title, rows))
        return
    width = max((len(name) for name, _ in rows), default=0)
    lines = [title, *(f"{name:<{width}}  {value}" for name, value in rows)]
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


class ErrorLister:
    """Prints the first ``limit`` per-item errors on stderr, then only counts them."""

    def __init__(self, console: Console, limit: int = 20) -> None:
        self._console = console
        self._limit = limit
        self.count = 0

    def report(self, message: str) -> None:
        """Show one error line (callers mask customer keys first)."""
        self.count += 1
        if self.count <= self._limit:
            self._console.print(message, markup=False, highlight=False, soft_wrap=True)

    def finish(self, where: str | None) -> None:
        """Say how many errors were not shown, and where they all are."""
        hidden = self.count - self._limit
        if hidden > 0:
            tail = f" (all of them are in {where})" if where else ""
            self._console.print(
                f"... and {hidden} more{tail}", markup=False, highlight=False, soft_wrap=True
            )


class BudgetWatch:
    """Remembers the lowest level of the client's retry budget seen during a run.

    The budget (``ClientStats.retry_budget``) only falls when a failure is retried, so sampling
    it as each failed item settles catches it running dry.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.lowest = policy.budget_capacity

    def sample(self, stats: ClientStats) -> None:
        """Record the budget's current level."""
        self.lowest = min(self.lowest, stats.retry_budget)

    @property
    def ran_dry(self) -> bool:
        """True when the budget fell below the cost of one retry at some point."""
        policy = self.policy
        cheapest = min(policy.retry_cost, policy.timeout_retry_cost)
        return policy.budget_capacity > 0 and self.lowest < cheapest

    def row(self, stats: ClientStats) -> tuple[str, str]:
        """The summary row: tokens left, and whether failures went unretried."""
        self.sample(stats)
        policy = self.policy
        if policy.budget_capacity == 0:
            return ("retry budget", "off")
        text = f"{stats.retry_budget:,.0f} of {policy.budget_capacity:,.0f} tokens left"
        if self.ran_dry:
            text += (
                " (it ran dry: later failures were reported without a retry, "
                "as a client-wide outage protection)"
            )
        return ("retry budget", text)


def client_rows(
    stats: ClientStats,
    recorder: EventRecorder,
    elapsed: float,
    budget: BudgetWatch | None = None,
) -> list[tuple[str, str]]:
    """Rows about the client's own work: HTTP requests, retries, statuses, tokens, throttle."""
    statuses = ", ".join(f"{status}: {count:,}" for status, count in sorted(stats.statuses.items()))
    retries = f"{stats.retries:,}"
    if recorder.retry_reasons:
        reasons = ", ".join(
            f"{reason}: {n:,}" for reason, n in recorder.retry_reasons.most_common()
        )
        retries += f" ({reasons})"
    rows = [
        ("HTTP requests", f"{stats.requests:,} ({format_rate(stats.requests, elapsed, 'req')})"),
        ("HTTP statuses", statuses or "-"),
        ("retries", retries),
    ]
    if budget is not None:
        rows.append(budget.row(stats))
    rows += [
        ("token requests", f"{stats.token_requests:,}"),
        (
            "throttle",
            f"held back {plural(stats.throttle.throttled, 'time')}, "
            f"{plural(stats.throttle.overloads, 'overload signal')}",
        ),
    ]
    return rows
