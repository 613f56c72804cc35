"""``mxo-async worker ingest|erase`` and ``mxo-async sweep enqueue|status|export``: fleet workers on
Redis Streams (extra ``redis``; see :mod:`mxo_async.redis`).

Signals: the first SIGTERM or SIGINT stops reading; what the worker holds is sent, settled and
acknowledged, and the command exits 0 (or exits 3 if that takes longer than --shutdown-timeout,
the rest staying pending for another worker). A second signal exits at once with 130 (SIGINT) or
143 (SIGTERM): what was held stays pending and is reclaimed by another worker after
--claim-after. Every --status-interval seconds a status line goes to stderr; at the end the
worker's counters go to stdout as one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import click
import orjson

from mxo_async import Limits, MXOClient, RetryPolicy
from mxo_async._input_records import InputError, parse_customer_json, parse_customer_text

from ._inputs import CUSTOMER_FORMATS, CsvCustomers, detect_format, first_line
from ._lines import iter_lines, open_input, open_reader
from ._status import ExitCode
from ._target import Target, finish, key_attribute_option

__all__ = ["sweep", "worker"]

_REDIS_HINT = 'the fleet commands need the "redis" extra: pip install "mxo-async[redis]"'


def _redis(url: str) -> Any:
    try:
        from redis.asyncio import Redis
    except ImportError:
        raise click.UsageError(_REDIS_HINT) from None
    return Redis.from_url(url)


def _redis_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--redis",
        "redis_url",
        metavar="URL",
        envvar="MXO_REDIS_URL",
        required=True,
        help="The fleet's Redis: redis://host:6379/0, rediss:// for TLS [env MXO_REDIS_URL].",
    )(command)


def _worker_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--consumer", metavar="NAME", help="This worker's name [default: host-pid]."),
        click.option(
            "--claim-after",
            type=click.FloatRange(0.01),
            default=60.0,
            show_default=True,
            help="Seconds before the entries of a silent worker are reclaimed by another.",
        ),
        click.option(
            "--max-deliveries",
            type=click.IntRange(1),
            default=5,
            show_default=True,
            help="An entry delivered more often is dead-lettered (recorded as failed) as poison.",
        ),
        click.option("--rate", type=click.FloatRange(0.001), help="Requests per second at most."),
        click.option(
            "--namespace",
            metavar="NAME",
            help="Share rate, pause and token with every process of this namespace "
            "(RedisCoordinator on the same Redis).",
        ),
        click.option(
            "--status-interval",
            type=click.FloatRange(0.1),
            default=10.0,
            show_default=True,
            help="Seconds between status lines on stderr.",
        ),
        click.option(
            "--shutdown-timeout",
            type=click.FloatRange(0.1),
            default=30.0,
            show_default=True,
            help="Seconds a stopping worker may take to settle what it holds.",
        ),
        click.option(
            "--metrics-port",
            type=click.IntRange(0, 65535),
            help="Serve Prometheus metrics on this port (extra 'metrics': prometheus-client).",
        ),
        key_attribute_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(short_help="Run a fleet worker on Redis Streams (ingest, erase).")
def worker() -> None:
    """Fleet workers: any number, on any machines, killable at any moment."""


@click.group(short_help="Queue, watch and export an erasure sweep kept in Redis.")
def sweep() -> None:
    """An erasure sweep kept in Redis, worked by `mxo-async worker erase`."""


class _Stopper:
    """SIGTERM/SIGINT: the first stops the worker gracefully, the second exits at once."""

    def __init__(self, stop: Callable[[], None], timeout: float) -> None:
        self.stop = stop
        self.timeout = timeout
        self.signalled: int | None = None
        self.timed_out = False
        self._timer: asyncio.TimerHandle | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(number, self._on_signal, number)

    def _on_signal(self, number: int) -> None:
        if self.signalled is not None:
            print("second signal: exiting now; held entries stay pending", file=sys.stderr)
            sys.stderr.flush()
            os._exit(128 + number)
        self.signalled = number
        print(
            f"{signal.Signals(number).name}: stopping (settling what is held, at most "
            f"{self.timeout:g} s; a second signal exits at once)",
            file=sys.stderr,
            flush=True,
        )
        self.stop()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.timeout, self._expire)

    def _expire(self) -> None:
        print("shutdown timeout: exiting; what is left stays pending", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(int(ExitCode.ABORTED))


def _client(
    target: Target,
    rate: float | None,
    at_least_once: bool,
    coordinator: object,
    concurrency: int | None = None,
) -> MXOClient:
    limits = (
        Limits(rate=rate) if concurrency is None else Limits(max_connections=concurrency, rate=rate)
    )
    return target.client(
        retry=RetryPolicy(retry_ambiguous=at_least_once), limits=limits, coordinator=coordinator
    )


def _coordinator(redis: Any, namespace: str | None) -> object:
    if namespace is None:
        return None
    from mxo_async.redis import RedisCoordinator

    return RedisCoordinator(redis, namespace=namespace)


async def _status_loop(interval: float, line: Callable[[], str]) -> None:
    while True:
        await asyncio.sleep(interval)
        print(line(), file=sys.stderr, flush=True)


def _rate(count: int, started: float) -> str:
    return f"{count / max(time.monotonic() - started, 1e-9):,.0f}/s"


async def _serve(
    job: Awaitable[Any],
    stopper: _Stopper,
    status: Callable[[], str],
    interval: float,
    metrics: Callable[[], None] | None,
) -> None:
    stopper.install()
    if metrics is not None:
        metrics()
    ticker = asyncio.create_task(_status_loop(interval, status))
    try:
        await job
    finally:
        ticker.cancel()
        print(status(), file=sys.stderr, flush=True)


@worker.command(short_help="Send the activities of a Redis stream (consumer group).")
@_redis_option
@click.option("--stream", "stream_name", required=True, metavar="NAME", help="The stream's key.")
@click.option("--group", required=True, metavar="NAME", help="The consumer group.")
@click.option(
    "--at-least-once",
    is_flag=True,
    help="Retry ambiguous entries (may store an activity twice) instead of dead-lettering them.",
)
@click.option(
    "--max-pending",
    type=click.IntRange(1),
    default=5000,
    show_default=True,
    help="Entries held at most (the worker's memory bound).",
)
@click.option(
    "--max-latency",
    type=click.FloatRange(0.001),
    default=0.1,
    show_default=True,
    help="Seconds an activity may wait for others of its customer context.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=64,
    show_default=True,
    help="Requests in flight at most (as for send).",
)
@_worker_options
@click.pass_obj
def ingest(target: Target, /, redis_url: str, stream_name: str, group: str, **options: Any) -> None:
    """Send the activities of stream NAME's entries (`mxo-async send` NDJSON lines in the field
    `record`) as consumer GROUP. An entry is acknowledged once its activities settled; rejected,
    failed, invalid and (without --at-least-once) ambiguous ones go to NAME:dead with the reason.
    Activities without a timestamp get the time their entry was added (the order produced)."""
    from mxo_async.redis import ActivityStream, WorkerStopped

    async def run() -> ExitCode:
        redis = _redis(redis_url)
        try:
            stream = ActivityStream(redis, stream_name)
            job = stream.worker(
                group,
                options["consumer"],
                claim_after=options["claim_after"],
                max_deliveries=options["max_deliveries"],
                at_least_once=options["at_least_once"],
                max_pending=options["max_pending"],
                max_latency=options["max_latency"],
                concurrency=options["concurrency"],
            )
            stats = job.stats
            client = _client(
                target,
                options["rate"],
                options["at_least_once"],
                _coordinator(redis, options["namespace"]),
                options["concurrency"],
            )

            def status() -> str:
                dead = sum(stats.dead_lettered.values())
                lag = "?" if stats.lag is None else f"{stats.lag:,}"
                return (
                    f"ingest {job.consumer}: {stats.acked:,} acked "
                    f"({_rate(stats.settled, stats.started)}), {stats.activities:,} activities, "
                    f"lag {lag}, held {stats.held:,}, dead-lettered {dead:,}, "
                    f"retried {stats.retried:,}, reclaimed {stats.reclaimed:,}"
                )

            code = ExitCode.OK
            async with client:
                try:
                    await _serve(
                        job.run(client),
                        _Stopper(job.stop, options["shutdown_timeout"]),
                        status,
                        options["status_interval"],
                        _metrics(options["metrics_port"], "ingest", stats.as_dict),
                    )
                except WorkerStopped as exc:
                    click.echo(f"Error: {exc}", err=True)
                    code = ExitCode.ABORTED
            click.echo(orjson.dumps({"consumer": job.consumer, **stats.as_dict()}).decode())
            return code
        finally:
            await redis.aclose()

    finish(asyncio.run(run()))


@worker.command(short_help="Erase the customers of a sweep kept in Redis.")
@_redis_option
@click.option("--sweep", "sweep_name", required=True, metavar="NAME", help="The sweep's name.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=16,
    show_default=True,
    help="Deletes in flight at most.",
)
@click.option("--follow", is_flag=True, help="Keep waiting for customers once the sweep is done.")
@_worker_options
@click.pass_obj
def erase(target: Target, /, redis_url: str, sweep_name: str, **options: Any) -> None:
    """Erase the customers queued in sweep NAME (`mxo-async sweep enqueue`), with any number of
    other workers. Each outcome is recorded in Redis in one atomic step with its ACK; the
    command ends when every customer of the sweep has an outcome (unless --follow)."""
    from mxo_async.redis import ErasureSweep

    async def run() -> ExitCode:
        redis = _redis(redis_url)
        try:
            job = ErasureSweep(redis, sweep_name)
            stats = job.stats
            started = time.monotonic()
            client = _client(
                target, options["rate"], False, _coordinator(redis, options["namespace"])
            )

            def status() -> str:
                return (
                    f"erase {sweep_name}: {stats.settled:,} settled ({_rate(stats.settled, started)}): "
                    f"{stats.erased:,} erased, {stats.not_found:,} not found, "
                    f"{stats.failed:,} failed, held {stats.held:,}, reclaimed {stats.reclaimed:,}"
                )

            async with client:
                await _serve(
                    job.work(
                        client,
                        options["concurrency"],
                        consumer=options["consumer"],
                        claim_after=options["claim_after"],
                        max_deliveries=options["max_deliveries"],
                        until_done=not options["follow"],
                    ),
                    _Stopper(job.stop, options["shutdown_timeout"]),
                    status,
                    options["status_interval"],
                    _metrics(options["metrics_port"], "erase", stats.as_dict),
                )
            click.echo(orjson.dumps(stats.as_dict()).decode())
            return ExitCode.OK
        finally:
            await redis.aclose()

    finish(asyncio.run(run()))


def _metrics(
    port: int | None, kind: str, counters: Callable[[], dict[str, Any]]
) -> Callable[[], None] | None:
    if port is None:
        return None
    try:
        from mxo_async.redis._metrics import serve_metrics
    except ImportError:
        raise click.UsageError(
            '--metrics-port needs prometheus-client: pip install "mxo-async[metrics]"'
        ) from None
    return lambda: serve_metrics(port, kind, counters)


@sweep.command(short_help="Queue the customers of a file in a sweep (idempotent).")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@_redis_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(CUSTOMER_FORMATS),
    help="Input format [default: from the extension; text for '-'].",
)
@key_attribute_option
@click.pass_obj
def enqueue(target: Target, name: str, file: str, redis_url: str, fmt: str | None) -> None:
    """Queue the customers of FILE (as `mxo-async erase` reads them) in sweep NAME. A customer
    queued before in this sweep is not queued again, so a second run is harmless."""
    from mxo_async import Customer
    from mxo_async.redis import EnqueueProgress, ErasureSweep

    try:
        chosen = detect_format(file, fmt, CUSTOMER_FORMATS, stdin="text")
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    key_attribute = target.key_attribute()
    invalid = 0

    async def customers(stream: Any) -> Any:
        nonlocal invalid
        async with open_reader(stream) as read:
            lines = iter_lines(read)
            parse: Callable[[str], Customer | None]
            if chosen == "csv":
                header = await first_line(lines)
                if header is None:
                    return
                rows = CsvCustomers(header.text, key_attribute)
                parse = lambda t: None if rows.repeats_header(t) else rows.parse(t)  # noqa: E731
            elif chosen == "ndjson":
                parse = lambda t: parse_customer_json(t, key_attribute)  # noqa: E731
            else:
                parse = lambda t: parse_customer_text(t, key_attribute)  # noqa: E731
            async for line in lines:
                if line.error is not None or not line.text.strip():
                    continue
                try:
                    customer = parse(line.text)
                except InputError as exc:
                    invalid += 1
                    click.echo(f"line {line.number}: invalid: {exc}", err=True)
                    continue
                if customer is not None:
                    yield customer

    def progress(p: EnqueueProgress) -> None:
        click.echo(f"\r{p.read:,} read, {p.queued:,} queued", err=True, nl=False)

    async def run(stream: Any) -> EnqueueProgress:
        redis = _redis(redis_url)
        try:
            return await ErasureSweep(redis, name).enqueue(customers(stream), on_progress=progress)
        finally:
            await redis.aclose()

    with open_input(file) as (stream, _):
        done = asyncio.run(run(stream))
    click.echo("", err=True)
    click.echo(
        f"{done.queued:,} customers queued in sweep {name} "
        f"({done.duplicates:,} already queued, {invalid:,} invalid lines)"
    )
    finish(ExitCode.OK if invalid == 0 else ExitCode.NOT_DELIVERED)


@sweep.command(short_help="Show a sweep's progress.")
@click.argument("name")
@_redis_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def status(name: str, redis_url: str, as_json: bool) -> None:
    """Customers of sweep NAME: pending, in flight per worker, erased, not found, failed."""
    from mxo_async.redis import ErasureSweep

    async def run() -> Any:
        redis = _redis(redis_url)
        try:
            return await ErasureSweep(redis, name).status()
        finally:
            await redis.aclose()

    state = asyncio.run(run())
    if as_json:
        import attrs

        click.echo(orjson.dumps({**attrs.asdict(state), "done": state.done}).decode())
        return
    click.echo(f"sweep {name}: {state.customers:,} customers")
    click.echo(f"  pending    {state.pending:,}")
    for consumer, count in sorted(state.in_flight.items()):
        if count:
            click.echo(f"  in flight  {count:,} ({consumer})")
    click.echo(f"  erased     {state.erased:,}")
    click.echo(f"  not found  {state.not_found:,}")
    click.echo(f"  failed     {state.failed:,}")
    click.echo("  done" if state.done else "  working")


@sweep.command(short_help="Write a sweep's audit export (the journal's format).")
@click.argument("name")
@_redis_option
@click.option(
    "--report",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the export (mode 0600).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    help="Export format [default: from the --report extension, else csv].",
)
def export(name: str, redis_url: str, report: str, fmt: str | None) -> None:
    """One row per customer of sweep NAME with its outcome, in the same format as
    `mxo-async erase --report` (the journal's audit export)."""
    from mxo_async.redis import ErasureSweep

    chosen: Any = fmt or ("json" if report.lower().endswith(".json") else "csv")

    async def run() -> int:
        redis = _redis(redis_url)
        try:
            return await ErasureSweep(redis, name).export(report, chosen)
        finally:
            await redis.aclose()

    rows = asyncio.run(run())
    click.echo(f"{rows:,} customers written to {report}")


@sweep.command(name="retry-failed", short_help="Queue a sweep's failed customers again.")
@click.argument("name")
@_redis_option
def retry_failed(name: str, redis_url: str) -> None:
    """Queue every customer of sweep NAME whose outcome is failed again."""
    from mxo_async.redis import ErasureSweep

    async def run() -> int:
        redis = _redis(redis_url)
        try:
            return await ErasureSweep(redis, name).retry_failed()
        finally:
            await redis.aclose()

    click.echo(f"{asyncio.run(run()):,} failed customers queued again")
