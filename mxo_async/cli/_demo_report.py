"""The demo's options, its results and the summary tables it prints."""

from __future__ import annotations

import attrs
from rich.console import Console

from mxo_async import Customer, JournalSummary, MXOClient
from mxo_async.emulator import Emulator, Faults

from ._progress import (
    BudgetWatch,
    EventRecorder,
    client_rows,
    format_rate,
    format_seconds,
    print_summary_table,
)
from ._status import Tally, plural

__all__ = ["ERASE_EVERY", "DemoOptions", "DemoState", "delivery_note", "print_summary"]

ERASE_EVERY = 10  # erase 10% of the demo customers


@attrs.frozen
class DemoOptions:
    customers: int
    per_customer: int
    concurrency: int
    faults: Faults | None
    seed: int
    at_least_once: bool
    adaptive: bool


@attrs.define
class DemoState:
    """What the demo's steps found, for the summary."""

    ingest: Tally = attrs.Factory(Tally)
    ingest_requests: int = 0
    ingest_time: float = 0.0
    erase: Tally = attrs.Factory(Tally)
    erased: list[Customer] = attrs.Factory(list)
    erase_time: float = 0.0
    resumed: Tally = attrs.Factory(Tally)
    structures_ok: bool = True
    journal: JournalSummary | None = None
    stopped: str | None = None  # why the demo stopped early (a signal, a fatal failure)


def print_summary(
    out: Console,
    options: DemoOptions,
    state: DemoState,
    client: MXOClient,
    recorder: EventRecorder,
    emulator: Emulator | None,
    elapsed: float,
    budget: BudgetWatch | None = None,
) -> bool:
    """Print the summary tables; return True when everything was delivered and consistent."""
    ingest, erase = state.ingest, state.erase
    activities = ingest.activities
    out.print()
    print_summary_table(
        out,
        "Ingestion (send_activities)",
        [
            ("customers", f"{options.customers:,}"),
            ("activities", f"{activities:,} in {plural(state.ingest_requests, 'request')}"),
            ("delivered", _activities(ingest.activities_delivered, ingest.delivered)),
            (
                "failed",
                _activities(ingest.activities_failed, ingest.failed) + ": not stored",
            ),
            (
                "rejected",
                _activities(ingest.activities_rejected, ingest.rejected)
                + ": not processed by MXO, never retried",
            ),
            (
                "ambiguous",
                _activities(ingest.activities_ambiguous, ingest.ambiguous)
                + ": may or may not be stored",
            ),
            (
                "unconfirmed",
                _activities(ingest.activities_unconfirmed, ingest.unconfirmed)
                + ": stored, answer unreadable",
            ),
            (
                "throughput",
                f"{format_rate(state.ingest_requests, state.ingest_time, 'req')} · "
                f"{format_rate(activities, state.ingest_time, 'activities')}",
            ),
            ("time", format_seconds(state.ingest_time)),
            ("latency", recorder.percentiles("send_activity")),
        ],
    )
    out.print()
    failed = erase.failed + erase.ambiguous + erase.unconfirmed
    print_summary_table(
        out,
        "Erasure sweep (delete_customers, journaled)",
        [
            ("customers", f"{erase.items:,} (every {ERASE_EVERY}th)"),
            ("erased", f"{erase.delivered:,}; failed {failed:,}"),
            ("throughput", format_rate(erase.items, state.erase_time, "req")),
            ("time", format_seconds(state.erase_time)),
            ("latency", recorder.percentiles("delete_customer")),
            (
                "re-run",
                f"{state.resumed.skipped:,} skipped from the journal, "
                f"{state.resumed.items:,} retried",
            ),
            ("journal", _journal_text(state.journal)),
        ],
    )
    out.print()
    print_summary_table(
        out,
        "Client",
        [
            *client_rows(client.stats, recorder, elapsed, budget),
            ("total time", format_seconds(elapsed)),
        ],
    )
    consistent = True
    if emulator is not None:
        consistent, rows = _emulator_rows(options, state, emulator)
        out.print()
        print_summary_table(out, "Emulator (what the server applied)", rows)
    ok = (
        ingest.all_delivered
        and erase.all_delivered
        and state.structures_ok
        and state.resumed.all_delivered
        and consistent
        and state.stopped is None
    )
    out.print()
    if state.stopped is not None:
        out.print(f"Stopped: {state.stopped}", highlight=False, markup=False)
    if ok:
        result = "everything was delivered, read and erased (exit status 0)"
    elif state.stopped is not None:
        result = "stopped before the end; see the counts above"
    else:
        result = "NOT everything was delivered; see the counts above (exit status 1)"
    out.print(f"Result: {result}", highlight=False, markup=False)
    return ok


def _activities(activities: int, requests: int) -> str:
    """``12 activities (3 requests)``."""
    return f"{plural(activities, 'activity', 'activities')} ({plural(requests, 'request')})"


def _emulator_rows(
    options: DemoOptions, state: DemoState, emulator: Emulator
) -> tuple[bool, list[tuple[str, str]]]:
    counters = emulator.counters
    ingest = state.ingest
    applied = counters.applied_activities
    delivered = ingest.activities_delivered
    extra = applied - delivered
    if options.at_least_once:
        consistent = extra >= 0
        replays = counters.activity_requests_applied - ingest.delivered
        verdict = (
            f"all {delivered:,} delivered activities were applied; "
            f"{plural(extra, 'activity', 'activities')} ({plural(replays, 'request')}) "
            "were stored twice by replays after a reset"
        )
    else:
        consistent = 0 <= extra <= ingest.activities_ambiguous
        verdict = (
            f"all {delivered:,} delivered activities were applied; {extra:,} of the "
            f"{ingest.activities_ambiguous:,} ambiguous ones were applied too"
        )
    if extra < 0:
        verdict = f"LOST: {-extra:,} delivered activities were not applied"
    still_there = sum(1 for c in state.erased if emulator.customer(c.key) is not None)
    consistent = consistent and still_there == 0
    faults = ", ".join(f"{k}: {v:,}" for k, v in sorted(counters.faults_injected.items()))
    statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(counters.status_counts.items()))
    return consistent, [
        ("API requests received", f"{counters.requests:,} ({statuses})"),
        (
            "activities applied",
            f"{applied:,} in {plural(counters.activity_requests_applied, 'request')}",
        ),
        (
            "activities rejected",
            f"{counters.rejected_activities:,} (listed in the answers' errors, not stored)",
        ),
        ("check", verdict),
        (
            "deletes applied",
            f"{counters.deletes_applied:,}; erased customers still stored: {still_there}",
        ),
        ("faults injected", faults or "none"),
        ("token requests", f"{counters.token_requests:,}"),
    ]


def delivery_note(at_least_once: bool) -> str:
    if at_least_once:
        return (
            "Delivery: at-least-once (RetryPolicy(retry_ambiguous=True)): requests that may "
            "have been applied are replayed, so nothing is ambiguous but duplicates are possible."
        )
    return (
        "Delivery: at-most-once (the default): a request that fails after it may have been "
        "applied is reported as ambiguous, never replayed; --at-least-once replays it."
    )


def _journal_text(journal: JournalSummary | None) -> str:
    if journal is None:
        return "-"
    return (
        f"{plural(journal.customers, 'customer')}: {journal.erased:,} erased, "
        f"{journal.not_found:,} not found, {journal.failed:,} failed"
    )
