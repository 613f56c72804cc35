"""``mxo-async --otel``: traces and metrics of a run, through OTLP or as a summary on stderr.

``--otel`` (or ``--otel otlp``) exports spans and metrics with OpenTelemetry's OTLP exporters, set
up as usual by the standard ``OTEL_EXPORTER_OTLP_*`` variables (``OTEL_SERVICE_NAME`` names the
service, ``mxo-async`` by default). ``--otel console`` keeps the spans in memory and prints one
line per kind of span when the command ends: how many, their outcomes, and their durations.
Both need the ``otel`` extra; the SDK comes with its OTLP exporter.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import click

from mxo_async import MXOClient

from ._target import Target

__all__ = ["MODES", "TracedTarget", "start"]

MODES = ("otlp", "console")
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_HINT = 'mxo-async --otel needs the "otel" extra: pip install "mxo-async[otel]"'


@attrs.frozen
class TracedTarget(Target):
    """A target whose clients report to the run's telemetry."""

    telemetry: object = attrs.field(default=None, repr=False, kw_only=True)

    def client(self, environ: Mapping[str, str] | None = None, **options: object) -> MXOClient:
        options.setdefault("telemetry", self.telemetry)
        return super().client(environ, **options)


def start(mode: str, environ: Mapping[str, str] | None = None) -> tuple[object, Callable[[], None]]:
    """The telemetry for the run's clients, and what to call when the command ends."""
    env = os.environ if environ is None else environ
    if mode == "otlp" and not any(env.get(name) for name in _ENDPOINTS):
        raise click.UsageError(
            "--otel exports through OTLP: set OTEL_EXPORTER_OTLP_ENDPOINT "
            "(or use --otel console for a summary on stderr)"
        )
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        from mxo_async.otel import OpenTelemetry
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "opentelemetry":
            raise
        raise click.UsageError(_HINT) from None
    resource = Resource.create(
        {} if env.get("OTEL_SERVICE_NAME") else {"service.name": "mxo-async"}
    )
    tracer_provider = TracerProvider(resource=resource)
    meter_provider: Any = None
    summary: _Summary | None = None
    if mode == "otlp":
        span_exporter, metric_exporter = _otlp_exporters(env)
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        reader = PeriodicExportingMetricReader(metric_exporter)
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    else:
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.sdk.trace.export import SpanExporter

        collected = summary = _Summary()

        class Collect(SpanExporter):
            def export(self, spans: Sequence[Any]) -> Any:
                return collected.export(spans)

        tracer_provider.add_span_processor(SimpleSpanProcessor(Collect()))
        meter_provider = NoOpMeterProvider()

    def finish() -> None:
        tracer_provider.shutdown()
        if hasattr(meter_provider, "shutdown"):
            meter_provider.shutdown()
        if summary is not None:
            click.echo(summary.render(), err=True)

    telemetry = OpenTelemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return telemetry, finish


def _otlp_exporters(env: Mapping[str, str]) -> tuple[Any, Any]:
    """The OTLP span and metric exporters of ``OTEL_EXPORTER_OTLP_PROTOCOL`` (http/protobuf by
    default, as the specification says; ``grpc`` too)."""
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "opentelemetry":
            raise
        raise click.UsageError(_HINT) from None
    return OTLPSpanExporter(), OTLPMetricExporter()


class _Summary:
    """Per span name, the outcomes and durations (the span exporter of ``--otel console``)."""

    def __init__(self) -> None:
        self._durations: dict[str, list[float]] = defaultdict(list)
        self._outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        self._attempts: Counter[str] = Counter()

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        for span in spans:
            attributes = span.attributes or {}
            name = span.name
            if span.end_time is not None and span.start_time is not None:
                self._durations[name].append((span.end_time - span.start_time) / 1e6)
            outcome = attributes.get("mxo.outcome")
            if outcome is not None:
                self._outcomes[name][str(outcome)] += 1
            self._attempts[name] += int(attributes.get("mxo.attempts", 0))
        return SpanExportResult.SUCCESS

    def render(self) -> str:
        """One line per span name: count, outcomes, attempts, p50/p95/max milliseconds."""
        if not self._durations:
            return "OpenTelemetry: no spans"
        lines = ["OpenTelemetry spans (durations in ms):"]
        for name in sorted(self._durations, key=lambda n: -len(self._durations[n])):
            durations = sorted(self._durations[name])
            counted = " ".join(f"{k}={v}" for k, v in sorted(self._outcomes[name].items()))
            outcomes = f" [{counted}]" if counted else ""
            p95 = durations[min(len(durations) - 1, int(len(durations) * 0.95))]
            attempts = f" attempts={self._attempts[name]}" if self._attempts[name] else ""
            lines.append(
                f"  {name}: {len(durations)}{outcomes}{attempts} "
                f"p50={statistics.median(durations):.1f} p95={p95:.1f} max={durations[-1]:.1f}"
            )
        return "\n".join(lines)
