"""What telemetry costs a client: CPU per request with OpenTelemetry on, off, and without the hooks.

``python -m benchmarks.runners.telemetry --pairs 6 --requests 20000 [--baseline REV]``

Starts the lean server in its own process, then runs rounds of fresh client processes
(``--child MODE``) back to back, their order rotating: the same ``MXOClient`` and
``send_activities`` loop as the throughput suite's ``mxo_send_activities``, with

- ``off``: ``telemetry`` not given (the default);
- ``on``: ``telemetry=OpenTelemetry(...)`` over the SDK: a ``TracerProvider`` whose
  ``BatchSpanProcessor`` hands every span to an exporter that drops it, and a ``MeterProvider``
  whose periodic reader collects every second into an exporter that drops it; every span is
  sampled, so the whole cost of building and ending spans and recording metrics is measured;
- ``api``: ``telemetry=True`` in an application that configured no SDK (OpenTelemetry's no-op
  providers): what the library's own hooks cost;
- ``sampled``: the same as ``on`` with a ``ParentBased(TraceIdRatioBased(0.1))`` sampler, a common production
  setting: one call in ten is traced, every call is measured;
- ``baseline`` (with ``--baseline REV``): the working tree's ``mxo_async`` with the files that carry
  the telemetry hooks taken from ``REV`` (the code before the hooks), to show what ``off`` costs.

Each child warms up (1,000 requests), then measures its user+system CPU (all threads: the span
processor's too) over ``--requests`` requests. One JSON line: medians and each round's ratios.
CPU time on a shared machine swings by more than 1 %, so each child also counts the Python and C
function calls its event loop thread makes per request over 2,000 more requests
(``sys.setprofile``): a deterministic measure of the work ``off`` adds to ``baseline``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mxo_async as mxo

from .._common import CLIENT_ID, CLIENT_SECRET, SITE_KEY, activity_requests, cpu_seconds, emit
from ..server import ServerProcess

WARMUP = 1_000
COUNTED = 2_000
ROOT = Path(__file__).resolve().parents[2]
# The files the telemetry hooks touch; the baseline takes them from --baseline REV.
HOOKED = (
    "mxo_async/_calls.py",
    "mxo_async/_client.py",
    "mxo_async/_fanout.py",
    "mxo_async/_journal.py",
    "mxo_async/_batcher/_batcher.py",
)


def _telemetry(ratio: float | None = None) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from mxo_async.otel import OpenTelemetry

    class DropSpans(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class DropMetrics(MetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float = 0, **kwargs: Any) -> Any:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 0) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 0, **kwargs: Any) -> None:
            pass

    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    sampler = None if ratio is None else ParentBased(TraceIdRatioBased(ratio))
    tracer_provider = TracerProvider(sampler=sampler)
    tracer_provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    reader = PeriodicExportingMetricReader(DropMetrics(), export_interval_millis=1000)
    meter_provider = MeterProvider(metric_readers=[reader])
    return OpenTelemetry(tracer_provider=tracer_provider, meter_provider=meter_provider), (
        tracer_provider,
        meter_provider,
    )


async def _child(base_url: str, mode: str, n: int) -> None:
    options: dict[str, Any] = {}
    providers: tuple[Any, ...] = ()
    if mode in ("on", "sampled"):
        options["telemetry"], providers = _telemetry(None if mode == "on" else 0.1)
    elif mode == "api":
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.trace import NoOpTracerProvider

        from mxo_async.otel import OpenTelemetry

        options["telemetry"] = OpenTelemetry(
            tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()
        )
    async with mxo.MXOClient(
        base_url, SITE_KEY, CLIENT_ID, CLIENT_SECRET, allow_insecure_http=True, **options
    ) as client:

        async def run(start: int, count: int) -> int:
            failures = 0
            async with client.send_activities(
                activity_requests(count, start), concurrency=64
            ) as outcomes:
                async for outcome in outcomes:
                    failures += not outcome.ok
            return failures

        await run(0, WARMUP)
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        failures = await run(WARMUP, n)
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
        calls = [0]

        def count(frame: object, event: str, arg: object) -> None:
            if event in ("call", "c_call"):
                calls[0] += 1

        sys.setprofile(count)
        failures += await run(WARMUP + n, COUNTED)
        sys.setprofile(None)
    floor = _sdk_floor(providers) if mode == "on" else {}
    for provider in providers:
        provider.shutdown()
    emit(
        {
            "mode": mode,
            "requests": n,
            "failures": failures,
            "cpu_us_per_request": cpu / n * 1e6,
            "requests_per_s": n / wall,
            "calls_per_request": calls[0] / COUNTED,
            **floor,
        }
    )


def _sdk_floor(providers: tuple[Any, ...], n: int = 5_000) -> dict[str, float]:
    """What the SDK itself costs per call, whoever calls it: the least a traced call can cost.

    Measured in the child that just ran the client, with its providers (the same span processor
    and metric reader): ``n`` bare spans (started and ended, no attribute, no link: less than any
    HTTP client span carries) and ``n`` measurements of the request-duration histogram with the
    attributes the semantic conventions require (method, server address and port, status code)
    recorded outside any span (so no exemplar). A hot loop is the SDK's best case.
    """
    tracer_provider, meter_provider = providers
    tracer = tracer_provider.get_tracer("floor")
    histogram = meter_provider.get_meter("floor").create_histogram(
        "floor.request.duration", unit="s"
    )
    attributes = {
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": 8080,
        "http.response.status_code": 200,
    }
    cpu0 = cpu_seconds()
    for _ in range(n):
        tracer.start_span("POST /floor").end()
    span_us = (cpu_seconds() - cpu0) / n * 1e6
    cpu0 = cpu_seconds()
    for _ in range(n):
        histogram.record(0.001, attributes)
    histogram_us = (cpu_seconds() - cpu0) / n * 1e6
    return {"floor_span_us": span_us, "floor_histogram_us": histogram_us}


def _floor_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The SDK's floor (a bare span and one histogram measurement) as a ratio to ``off``."""
    ratios = [
        (off["cpu_us_per_request"] + on["floor_span_us"] + on["floor_histogram_us"])
        / off["cpu_us_per_request"]
        for off, on in zip(runs["off"], runs["on"], strict=True)
    ]
    return {
        "floor_span_us": statistics.median(r["floor_span_us"] for r in runs["on"]),
        "floor_histogram_us": statistics.median(r["floor_histogram_us"] for r in runs["on"]),
        "floor_vs_off": statistics.median(ratios),
        "floor_vs_off_runs": [round(r, 3) for r in ratios],
    }


def _baseline_tree(rev: str, directory: str) -> str:
    """A tree where ``import mxo_async`` is the working tree's minus the hooks (from ``rev``)."""
    tree = Path(directory) / "baseline"
    shutil.copytree(ROOT / "mxo_async", tree / "mxo_async")
    for path in HOOKED:
        shown = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, check=True
        )
        (tree / path).write_bytes(shown.stdout)
    for path in ("mxo_async/_telemetry.py", "mxo_async/otel.py"):
        (tree / path).unlink()
    (tree / "benchmarks").symlink_to(ROOT / "benchmarks")
    return str(tree)


def _run_child(base_url: str, mode: str, n: int, cwd: str) -> dict[str, Any]:
    # ``python -m`` puts the working directory first on sys.path: the baseline's cwd is its tree.
    child = "baseline" if mode == "baseline" else mode
    command = [sys.executable, "-m", "benchmarks.runners.telemetry", "--child", child]
    command += ["--base-url", base_url, "--requests", str(n)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=cwd)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _parent(pairs: int, n: int, baseline: str | None) -> None:
    with tempfile.TemporaryDirectory() as directory, ServerProcess("lean") as server:
        modes = ["off", "api", "on", "sampled"]
        cwd = dict.fromkeys(modes, str(ROOT))
        if baseline is not None:
            modes.insert(0, "baseline")
            cwd["baseline"] = _baseline_tree(baseline, directory)
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        for round_ in range(pairs):
            shift = round_ % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                result = _run_child(server.base_url, mode, n, cwd[mode])
                runs[mode].append(result)
                print(
                    f"round {round_ + 1}/{pairs} {mode}: {result['cpu_us_per_request']:.1f} µs CPU/request",
                    file=sys.stderr,
                    flush=True,
                )

        def ratios(mode: str, base: str) -> list[float]:
            return [
                a["cpu_us_per_request"] / b["cpu_us_per_request"]
                for a, b in zip(runs[mode], runs[base], strict=True)
            ]

        summary: dict[str, Any] = {
            "pairs": pairs,
            "requests": n,
            **{
                f"{mode}_cpu_us_per_request": statistics.median(
                    r["cpu_us_per_request"] for r in runs[mode]
                )
                for mode in modes
            },
            **{
                f"{mode}_requests_per_s": statistics.median(r["requests_per_s"] for r in runs[mode])
                for mode in modes
            },
            "on_vs_off": statistics.median(ratios("on", "off")),
            "on_vs_off_runs": [round(r, 3) for r in ratios("on", "off")],
            "api_vs_off": statistics.median(ratios("api", "off")),
            "api_vs_off_runs": [round(r, 3) for r in ratios("api", "off")],
            "sampled_vs_off": statistics.median(ratios("sampled", "off")),
            "sampled_vs_off_runs": [round(r, 3) for r in ratios("sampled", "off")],
            **{
                f"{mode}_calls_per_request": statistics.median(
                    r["calls_per_request"] for r in runs[mode]
                )
                for mode in modes
            },
            "failures": sum(r["failures"] for rs in runs.values() for r in rs),
            **_floor_summary(runs),
        }
        if baseline is not None:
            summary["off_vs_baseline"] = statistics.median(ratios("off", "baseline"))
            summary["off_vs_baseline_runs"] = [round(r, 3) for r in ratios("off", "baseline")]
            summary["on_vs_baseline"] = statistics.median(ratios("on", "baseline"))
        emit(summary)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runners.telemetry")
    parser.add_argument("--pairs", type=int, default=6, help="rounds (each runs every mode once)")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--baseline", metavar="REV", help="also run the code without the hooks")
    parser.add_argument("--child", choices=["off", "api", "on", "sampled", "baseline", "floor"])
    parser.add_argument("--base-url")
    args = parser.parse_args()
    if args.child == "floor":
        # Only the SDK's floor, --requests times: run it under callgrind at two sizes and divide
        # the difference for a deterministic count of instructions per call.
        _, providers = _telemetry()
        emit(_sdk_floor(providers, args.requests))
        for provider in providers:
            provider.shutdown()
    elif args.child:
        # The baseline child runs the off loop: its tree simply has no telemetry to turn on.
        mode = "off" if args.child == "baseline" else args.child
        asyncio.run(_child(args.base_url, mode, args.requests))
    else:
        _parent(args.pairs, args.requests, args.baseline)


if __name__ == "__main__":
    main()
