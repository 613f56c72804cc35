"""``mxo-async demo``: ingestion, a Pull Structure read and an erasure sweep, with a summary.

It runs against the embedded emulator (in this process, on a free loopback port) unless an MXO
target is configured and ``--emulator`` is not given.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import TypeVar

import click

from mxo_async import (
    ActivityRequest,
    AmbiguousDeliveryError,
    Customer,
    Limits,
    MXOClient,
    MXOError,
    RetryPolicy,
    summarize_journal,
)
from mxo_async._verdicts import describe_error
from mxo_async.emulator import Catalogue, Emulator, EmulatorConfig, Faults

from ._demo_data import (
    ACTIVITY_TYPES,
    PROFILE_TOUCHPOINT,
    PROPOSITIONS,
    demo_customer,
    demo_requests,
    erasure_customers,
)
from ._demo_report import ERASE_EVERY, DemoOptions, DemoState, delivery_note, print_summary
from ._emulator import parse_faults
from ._interrupt import Interruption
from ._progress import (
    BudgetWatch,
    ErrorLister,
    EventRecorder,
    progress_bar,
    stderr_console,
    stdout_console,
)
from ._status import ExitCode, FailureWatch
from ._target import Target, finish, key_attribute_option, run_command

__all__ = ["DEFAULT_FAULTS", "demo"]

T = TypeVar("T")
_IN_FLIGHT = "interrupted while in flight: it may or may not have been applied"

# Retry-After is 0.02 s rather than a real server's whole seconds, so the demo stays short.
# reject: the tenant answers 200 but does not process some activities (never retried).
DEFAULT_FAULTS = (
    "429=0.03,503=0.02,500=0.01,reset_before=0.01,reset_after=0.005,reject=0.005,"
    "latency=0.002,retry_after=0.02"
)


@click.command(short_help="Ingest, read and erase on an emulated tenant; print a summary.")
@click.option(
    "--customers",
    type=click.IntRange(1),
    default=2000,
    show_default=True,
    help="Customers to create.",
)
@click.option(
    "--activities-per-customer",
    "per_customer",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="Activities per customer (spread over their channels).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=64,
    show_default=True,
    help="Requests in flight at most during the ingestion.",
)
@click.option(
    "--faults",
    metavar="SPEC",
    is_flag=False,
    flag_value=DEFAULT_FAULTS,
    callback=parse_faults,
    help="Inject faults in the embedded emulator, e.g. '429=0.05,503=0.02'. The option alone "
    "injects the default mix: " + DEFAULT_FAULTS.replace(",", ", ") + ".",
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Seed for the traffic and the faults."
)
@click.option(
    "--at-least-once",
    is_flag=True,
    help="Replay requests that may already have been applied (no ambiguous outcomes, possible duplicates).",
)
@click.option(
    "--adaptive/--no-adaptive",
    default=True,
    show_default=True,
    help="Adaptive throttle: backs off when the server pushes back (sustained 429/503).",
)
@click.option(
    "--emulator",
    "force_emulator",
    is_flag=True,
    help="Use the embedded emulator even when an MXO target is configured.",
)
@click.option(
    "--yes",
    "-y",
    "confirmed",
    is_flag=True,
    help="Run against the configured MXO target without asking (it stores synthetic "
    "activities there and erases synthetic customers).",
)
@click.option(
    "--fleet",
    is_flag=True,
    help="Run a fleet instead: redis-server, the emulator and worker processes on Redis "
    "Streams, one SIGKILLed halfway (needs redis-server on PATH and the redis extra).",
)
@key_attribute_option
@click.pass_obj
def demo(
    target: Target,
    customers: int,
    per_customer: int,
    concurrency: int,
    faults: Faults | None,
    seed: int,
    at_least_once: bool,
    adaptive: bool,
    force_emulator: bool,
    confirmed: bool,
    fleet: bool,
) -> None:
    """Show the library at work: ingest, read a Pull Structure, erase, summarise.

    Without a configured target (MXO_* variables or options), an emulated tenant is started in
    this process. Steps: send CUSTOMERS x K activities (varied propositions, channels and
    timestamps of the last 30 days) through the streaming fan-out; read the customerProfile
    (renewalDue=true) and activitySummary structures of one customer; erase 10% of the customers
    with a journal, then re-run the sweep to show it resumes; print throughput, latency
    percentiles, retries and what the emulator applied.

    The emulated tenant knows the demo's proposition and activity-type codes (a catalogue), so
    without faults nothing is rejected; the 'reject' fault (in the default --faults) makes it
    answer 200 without processing some activities, which the summary counts as rejected: they
    are never retried and make the exit status 1.

    With a configured target (and no --emulator) the demo writes to that tenant: it asks
    first on a terminal, and otherwise needs --yes.

    By default a request that fails after it may have been applied is not replayed (a replay
    could store its activities twice) and is reported as ambiguous. Ctrl-C or SIGTERM stops
    the current step once its requests in flight have settled, skips the rest and prints the
    summary (a second signal aborts at once). Exit status 0 when every activity was
    delivered, every structure read and every erasure done (and the emulator's counts agree);
    1 otherwise, with every undelivered item listed or counted; 130 (143) when interrupted.
    """
    if fleet:
        from ._demo_fleet import run_fleet_demo

        finish(run_fleet_demo(faults, seed))
    embedded = force_emulator or not target.configured()
    if faults is not None and not embedded:
        raise click.UsageError("--faults needs the embedded emulator (add --emulator)")
    if not embedded and not confirmed:
        _confirm_real_target(target, customers * per_customer)
    options = DemoOptions(
        customers, per_customer, concurrency, faults, seed, at_least_once, adaptive
    )
    finish(run_command(_Demo(options, target, embedded).run()))


def _confirm_real_target(target: Target, activities: int) -> None:
    """Ask on a terminal before writing to a real tenant; without a terminal, demand --yes."""
    env = target.environment()
    where = f"{env.get('MXO_BASE_URL')} (site key {env.get('MXO_SITE_KEY')})"
    what = (
        f"The demo stores {activities:,} synthetic activities at {where} and erases 10% of "
        "its synthetic customers there."
    )
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise click.UsageError(
            f"{what} Add --yes to do that, or --emulator to use the embedded emulator."
        )
    if not click.confirm(f"{what} Go on?", err=True):
        raise click.Abort


class _Demo:
    def __init__(self, options: DemoOptions, target: Target, embedded: bool) -> None:
        self.options = options
        self.target = target
        self.embedded = embedded
        self.out = stdout_console()
        self.err = stderr_console()
        self.errors = ErrorLister(self.err, limit=10)
        self.recorder = EventRecorder()
        self.emulator: Emulator | None = None
        self.state = DemoState()
        self.interrupt = Interruption(self.err)
        self.watch = FailureWatch()
        self.stopped: str | None = None
        self.policy = RetryPolicy(retry_ambiguous=options.at_least_once)
        self.budget = BudgetWatch(self.policy)
        self.client: MXOClient | None = None

    def _until_stopped(self, items: Iterable[T]) -> Iterator[T]:
        """``items`` until the intake stops (a signal, or a failure that ends the demo)."""
        for item in items:
            if self.interrupt.stopping:
                return
            yield item

    async def run(self) -> ExitCode:
        with self.interrupt:
            try:
                code = await self._run()
            except asyncio.CancelledError:
                if not self.interrupt.aborted:
                    raise
                self.interrupt.uncancel()
                code = ExitCode.INTERRUPTED
        if self.stopped is not None:
            click.echo(f"Error: {self.stopped}", err=True)
            return ExitCode.ABORTED
        return self.interrupt.exit_code or code

    async def _run(self) -> ExitCode:
        options = self.options
        retry = self.policy
        limits = Limits(max_connections=options.concurrency, adaptive=options.adaptive)
        async with AsyncExitStack() as stack:
            if self.embedded:
                key_attribute = self.target.key_attribute()
                config = EmulatorConfig(
                    seed=options.seed,
                    faults=options.faults or Faults(),
                    keep_activities=False,
                    key_attribute=key_attribute,
                    catalogue=Catalogue(propositions=PROPOSITIONS, activity_types=ACTIVITY_TYPES),
                )
                emulator = self.emulator = await stack.enter_async_context(Emulator(config))
                client = MXOClient(
                    emulator.base_url,
                    emulator.site_key,
                    emulator.client_id,
                    emulator.client_secret,
                    customer_key_attribute=key_attribute,
                    retry=retry,
                    limits=limits,
                    on_event=self.recorder,
                )
                where = f"the embedded emulator at {emulator.base_url}"
                if options.faults is not None:
                    where += f" with faults {options.faults.to_spec()}"
            else:
                client = self.target.client(retry=retry, limits=limits, on_event=self.recorder)
                where = f"{client!r}"
            await stack.enter_async_context(client)
            self.client = client
            self.out.print(f"Target: {where}", highlight=False, markup=False)
            self.out.print(delivery_note(options.at_least_once), highlight=False)
            if not options.adaptive:
                self.out.print(
                    "Throttle: adaptive backoff off (--no-adaptive); "
                    "Retry-After pauses and retries stay on.",
                    highlight=False,
                )
            started = time.perf_counter()
            try:
                await self._ingest(client)
                if not self.interrupt.stopping:
                    await self._structures(client)
                if not self.interrupt.stopping:
                    await self._erase(client)
            finally:
                # Also after an abort (a second signal): what was done so far is summarised.
                elapsed = time.perf_counter() - started
                self.errors.finish(None)
                self.state.stopped = self._stop_text()
                ok = print_summary(
                    self.out,
                    self.options,
                    self.state,
                    client,
                    self.recorder,
                    self.emulator,
                    elapsed,
                    self.budget,
                )
            return ExitCode.OK if ok else ExitCode.NOT_DELIVERED

    def _stop_text(self) -> str | None:
        signal = self.interrupt.signal
        if signal is None:
            return None if self.stopped is None else f"aborted: {self.stopped}"
        if self.interrupt.aborted:
            return f"{signal.name} twice: aborted, the requests in flight were cut short"
        return f"{signal.name}: the step under way finished its requests in flight; later steps were skipped"

    async def _ingest(self, client: MXOClient) -> None:
        options = self.options
        total = options.customers * options.per_customer
        now = datetime.now(UTC)
        requests = demo_requests(options.customers, options.per_customer, options.seed, now)
        started = time.perf_counter()
        pending: dict[int, int] = {}  # fan-out index -> activities, for the requests in flight

        def tracked() -> Iterator[ActivityRequest]:
            for index, request in enumerate(self._until_stopped(requests)):
                pending[index] = len(request.activities)
                yield request

        with progress_bar(self.err, "Ingesting activities", total) as advance:
            sweep = client.send_activities(tracked(), concurrency=options.concurrency)
            try:
                async with sweep as outcomes:
                    async for outcome in outcomes:
                        count = pending.pop(outcome.index)
                        self.state.ingest.add(outcome.error, count)
                        self.state.ingest_requests += 1
                        advance(count)
                        if outcome.error is not None:
                            self._report(outcome.item.customer, "send", outcome.error)
            finally:
                for count in pending.values():  # left only by an abort: cut short in flight
                    self.state.ingest.add(AmbiguousDeliveryError(_IN_FLIGHT), count)
                    self.state.ingest_requests += 1
                self.state.ingest_time = time.perf_counter() - started

    async def _structures(self, client: MXOClient) -> None:
        customer = demo_customer(self.options.seed, 1)  # not among the erased ones
        reads: tuple[tuple[str, dict[str, str]], ...] = (
            ("customerProfile", {"renewalDue": "true"}),
            ("activitySummary", {}),
        )
        for name, properties in reads:
            try:
                found = await client.get_structure(customer, PROFILE_TOUCHPOINT, name, properties)
            except MXOError as exc:
                self.state.structures_ok = False
                self._report(customer, f"structure {name}", exc)
                continue
            context = ", ".join(f"{k}={v}" for k, v in properties.items()) or "no properties"
            self.out.print(
                f"\nPull Structure {name} for {customer.masked()} ({context}):", highlight=False
            )
            self.out.print_json(data=found.attributes)

    async def _erase(self, client: MXOClient) -> None:
        options = self.options
        targets = list(erasure_customers(options.customers, options.seed, ERASE_EVERY))
        with tempfile.TemporaryDirectory(prefix="mxo-async-demo-") as directory:
            journal = os.path.join(directory, "erasure.jsonl")
            started = time.perf_counter()
            with progress_bar(self.err, "Erasing customers", len(targets)) as advance:
                sweep = client.delete_customers(self._until_stopped(targets), journal=journal)
                async with sweep as outcomes:
                    async for outcome in outcomes:
                        self.state.erase.add(outcome.error)
                        advance(1)
                        if outcome.error is None:
                            self.state.erased.append(outcome.item)
                        else:
                            self._report(outcome.item, "erase", outcome.error)
            self.state.erase_time = time.perf_counter() - started
            if self.interrupt.stopping:
                self.state.journal = summarize_journal(journal)
                return
            # The same sweep again: the journal says who is done, so only failures are retried.
            async with client.delete_customers(targets, journal=journal) as outcomes:
                async for outcome in outcomes:
                    if outcome.error is None and outcome.attempts == 0:
                        self.state.resumed.skipped += 1
                    else:
                        self.state.resumed.add(outcome.error)
            self.state.journal = summarize_journal(journal)

    def _report(self, customer: Customer, what: str, error: MXOError) -> None:
        if self.client is not None:
            self.budget.sample(self.client.stats)
        stop = self.watch.observe(error)
        if stop is not None and self.stopped is None:
            self.stopped = stop
            self.interrupt.stop()
        self.errors.report(f"{what}: {customer.masked()}: {describe_error(error, customer)}")
