"""Telemetry against the emulator over real HTTP: aiohttp's own spans are children of our call
spans, and the emulator's rejected activity and reset-after-apply give their outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import mxo_async as mxo
from mxo_async import Activity, ActivityRequest, Customer
from mxo_async.emulator import Catalogue, Emulator, EmulatorConfig, Faults
from mxo_async.otel import OpenTelemetry

SEND_SPAN = "POST /one/oauth2/rt/api/{apiVersion}/customer/{siteKey}/activity"
TOKEN_SPAN = "POST /one/oauth2token"
QUICK = mxo.RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_cap=0.005)


class Recorded:
    """An SDK tracer provider recording in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        self.telemetry = OpenTelemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]


def attr(item: Any, name: str) -> Any:
    """Attribute ``name`` of a span or span event."""
    return (item.attributes or {})[name]


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    spans = Recorded()
    yield spans
    spans.tracer_provider.shutdown()
    spans.meter_provider.shutdown()


@pytest.fixture
def aiohttp_instrumented(recorded: Recorded) -> Iterator[None]:
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(
        tracer_provider=recorded.tracer_provider, meter_provider=recorded.meter_provider
    )
    yield
    instrumentor.uninstrument()


def client_for(emu: Emulator, recorded: Recorded) -> mxo.MXOClient:
    return mxo.MXOClient(
        emu.base_url,
        emu.site_key,
        emu.client_id,
        emu.client_secret,
        token_url=emu.token_url,
        retry=QUICK,
        telemetry=recorded.telemetry,
    )


@pytest.mark.usefixtures("aiohttp_instrumented")
async def test_aiohttp_client_spans_are_children_of_the_call_spans(recorded: Recorded) -> None:
    """With aiohttp-client instrumentation, each HTTP span's parent is our call or token span."""
    async with Emulator(EmulatorConfig()) as emu:
        async with client_for(emu, recorded) as client:
            await client.send_activity(Customer.by_key("k"), "web://x", Activity("p", "t"))
    (call,) = recorded.named(SEND_SPAN)
    (token,) = recorded.named(TOKEN_SPAN)
    ours = {call.context.span_id, token.context.span_id}
    http = [
        s
        for s in recorded.spans.get_finished_spans()
        if s.kind is SpanKind.CLIENT and s.context.span_id not in ours
    ]
    assert 2 == len(http)
    assert sorted([call.context.span_id, token.context.span_id]) == sorted(
        s.parent.span_id for s in http if s.parent is not None
    )
    assert {call.context.trace_id} == {s.context.trace_id for s in http}


async def test_a_rejected_activity_against_the_emulator_is_a_rejected_span(
    recorded: Recorded,
) -> None:
    """The emulator's catalogue rejects an unknown proposition: outcome rejected, with its code."""
    async with Emulator(EmulatorConfig(catalogue=Catalogue(propositions=["p"]))) as emu:
        async with client_for(emu, recorded) as client:
            with pytest.raises(mxo.RejectedActivitiesError):
                await client.send_activity(
                    Customer.by_key("k"), "web://x", [Activity("p", "t"), Activity("nope", "t")]
                )
    (span,) = recorded.named(SEND_SPAN)
    assert ("rejected", ("INVALID_PROPOSITION_CODE",), 2, StatusCode.ERROR) == (
        attr(span, "mxo.outcome"),
        attr(span, "mxo.rejected.codes"),
        attr(span, "mxo.activities"),
        span.status.status_code,
    )


async def test_a_reset_after_apply_is_an_ambiguous_span(recorded: Recorded) -> None:
    """The emulator stores the activity, then drops the connection: outcome ambiguous."""
    async with Emulator(EmulatorConfig(faults=Faults(reset_after=1.0))) as emu:
        async with client_for(emu, recorded) as client:
            with pytest.raises(mxo.AmbiguousDeliveryError):
                await client.send_activity(Customer.by_key("k"), "web://x", Activity("p", "t"))
        assert 1 == emu.counters.applied_activities
    (span,) = recorded.named(SEND_SPAN)
    assert ("ambiguous", True, 1, StatusCode.ERROR) == (
        attr(span, "mxo.outcome"),
        attr(span, "mxo.ambiguous"),
        attr(span, "mxo.attempts"),
        span.status.status_code,
    )


async def test_a_fan_out_of_deletes_is_one_span_and_one_trace_per_item(
    recorded: Recorded,
) -> None:
    """delete_customers over the emulator: a sweep span, and each delete its own linked trace."""
    async with Emulator(EmulatorConfig()) as emu:
        for n in range(5):
            emu.add_customer(f"c{n}")
        async with client_for(emu, recorded) as client:
            customers = [Customer.by_key(f"c{n}") for n in range(5)]
            async with client.delete_customers(customers, concurrency=2) as outcomes:
                assert 5 == len([o async for o in outcomes if o.ok])
    (sweep,) = recorded.named("delete_customers")
    deletes = recorded.named("DELETE /one/oauth2/rt/api/{apiVersion}/customer/{siteKey}")
    assert 5 == len({s.context.trace_id for s in deletes} - {sweep.context.trace_id})
    assert all(sweep.context.span_id == s.links[0].context.span_id for s in deletes)


async def test_batch_requests_against_the_emulator_carry_their_size(recorded: Recorded) -> None:
    """A batcher's requests: one span each, with the activities they carried."""
    async with Emulator(EmulatorConfig()) as emu:
        async with client_for(emu, recorded) as client:
            async with client.batcher(max_activities=5) as batcher:
                for _ in range(10):
                    await batcher.submit(Customer.by_key("k"), "web://x", Activity("p", "t"))
    spans = recorded.named(SEND_SPAN)
    assert [5, 5] == [attr(s, "mxo.activities") for s in spans]


async def test_send_activities_reports_each_item_ok(recorded: Recorded) -> None:
    """send_activities over the emulator: one ok call span per request."""
    requests = [ActivityRequest(Customer.by_key(f"c{n}"), "web://x", [Activity("p", "t")])
                for n in range(4)]  # fmt: skip
    async with Emulator(EmulatorConfig()) as emu:
        async with client_for(emu, recorded) as client:
            async with client.send_activities(requests) as outcomes:
                assert 4 == len([o async for o in outcomes if o.ok])
    assert ["ok"] * 4 == [attr(s, "mxo.outcome") for s in recorded.named(SEND_SPAN)]
