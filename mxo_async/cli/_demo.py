"""``mxo-async demo``: ingestion, a Pull Structure read and an erasure sweep, with a summary.

It runs against the embedded emulator (in this process, on a free loopback port) unless an MXO
target is configured and ``--emulator`` is not given.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import click
from rich.console import Console

from mxo_async import (
    Customer,
    Limits,
    MXOClient,
    MXOError,
    RetryPolicy,
    summarize_journal,
)
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
from ._progress import (
    ErrorLister,
    EventRecorder,
    progress_bar,
)
from ._status import Aborted, ExitCode, describe_error, is_fatal
from ._target import Target, finish, key_attribute_option, run_command

__all__ = ["DEFAULT_FAULTS", "demo"]

# Retry-After is 0.02 s rather than a real server's whole seconds, so the demo stays short.
# reject: the tenant answers 200 but does not process some activities (never retried).
DEFAULT_FAULTS = (
    "429=0.03,503=0.02,500=0.01,reset_before=0.01,reset_after=0.005,reject=0.005,"
    "latency=0.002,retry_after=0.02"
)


@click.command()
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
    help=f"Inject faults in the embedded emulator; '--faults' alone means '{DEFAULT_FAULTS}'.",
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

    By default a request that fails after it may have been applied is not replayed (a replay
    could store its activities twice) and is reported as ambiguous. Exit status 0 when every
    activity was delivered, every structure read and every erasure done (and the emulator's
    counts agree); 1 otherwise, with every undelivered item listed or counted.
    """
    embedded = force_emulator or not target.configured()
    if faults is not None and not embedded:
        raise click.UsageError("--faults needs the embedded emulator (add --emulator)")
    options = DemoOptions(
        customers, per_customer, concurrency, faults, seed, at_least_once, adaptive
    )
    finish(run_command(_Demo(options, target, embedded).run()))


class _Demo:
    def __init__(self, options: DemoOptions, target: Target, embedded: bool) -> None:
        self.options = options
        self.target = target
        self.embedded = embedded
        self.out = Console()
        self.err = Console(stderr=True)
        self.errors = ErrorLister(self.err, limit=10)
        self.recorder = EventRecorder()
        self.emulator: Emulator | None = None
        self.state = DemoState()

    async def run(self) -> ExitCode:
        options = self.options
        retry = RetryPolicy(retry_ambiguous=options.at_least_once)
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
            self.out.print(f"Target: {where}", highlight=False)
            self.out.print(delivery_note(options.at_least_once), highlight=False)
            if not options.adaptive:
                self.out.print(
                    "Throttle: adaptive backoff off (--no-adaptive); "
                    "Retry-After pauses and retries stay on.",
                    highlight=False,
                )
            started = time.perf_counter()
            await self._ingest(client)
            await self._structures(client)
            await self._erase(client)
            elapsed = time.perf_counter() - started
            self.errors.finish(None)
            ok = print_summary(
                self.out, self.options, self.state, client, self.recorder, self.emulator, elapsed
            )
            return ExitCode.OK if ok else ExitCode.NOT_DELIVERED

    async def _ingest(self, client: MXOClient) -> None:
        options = self.options
        total = options.customers * options.per_customer
        now = datetime.now(UTC)
        requests = demo_requests(options.customers, options.per_customer, options.seed, now)
        started = time.perf_counter()
        with progress_bar(self.err, "Ingesting activities", total) as advance:
            sweep = client.send_activities(requests, concurrency=options.concurrency)
            async with sweep as outcomes:
                async for outcome in outcomes:
                    count = len(outcome.item.activities)
                    self.state.ingest.add(outcome.error, count)
                    self.state.ingest_requests += 1
                    advance(count)
                    if outcome.error is not None:
                        self._report(outcome.item.customer, "send", outcome.error)
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
                async with client.delete_customers(targets, journal=journal) as outcomes:
                    async for outcome in outcomes:
                        self.state.erase.add(outcome.error)
                        advance(1)
                        if outcome.error is None:
                            self.state.erased.append(outcome.item)
                        else:
                            self._report(outcome.item, "erase", outcome.error)
            self.state.erase_time = time.perf_counter() - started
            # The same sweep again: the journal says who is done, so only failures are retried.
            async with client.delete_customers(targets, journal=journal) as outcomes:
                async for outcome in outcomes:
                    if outcome.error is None and outcome.attempts == 0:
                        self.state.resumed.skipped += 1
                    else:
                        self.state.resumed.add(outcome.error)
            self.state.journal = summarize_journal(journal)

    def _report(self, customer: Customer, what: str, error: MXOError) -> None:
        if is_fatal(error):
            raise Aborted(describe_error(error))
        self.errors.report(f"{what}: {customer.masked()}: {describe_error(error, customer)}")
