"""OpenTelemetry traces and metrics (issue 17) over the fake transport, with the SDK's in-memory
span exporter and metric reader: every entry point, every outcome, and nothing when it is off."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

import mxo_async as mxo
from mxo_async import Activity, ActivityRequest, Customer, Limits, RetryPolicy, TransportError
from mxo_async.otel import OpenTelemetry, site_key_hash

from .fakes import FakeClock, FakeTransport, Sent, response

SITE_KEY = "ONE-LJBKEO4Y7J-5669"
SECRET = "client-SECRET-value"
ALICE = Customer.by_key("alice@example.com")
OK = {"tid": "t-1", "errors": []}
SEND_SPAN = "POST /one/oauth2/rt/api/{apiVersion}/customer/{siteKey}/activity"
TOKEN_SPAN = "POST /one/oauth2token"
REJECTED = {
    "tid": "t-1",
    "errors": [
        {
            "errorCode": "INVALID_PROPOSITION_CODE",
            "errorMessage": "unknown proposition",
            "activity": {"propositionCode": "nope", "activityTypeCode": "t"},
        }
    ],
}


@attrs.define
class Otel:
    """An SDK tracer and meter provider recording in memory, and the telemetry built on them."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    telemetry: OpenTelemetry

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def metric(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value or count) of each data point of metric ``name``."""
        data = self.reader.get_metrics_data()
        points: list[tuple[dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            value = getattr(point, "value", None)
                            count = getattr(point, "count", None)
                            points.append(
                                (dict(point.attributes or {}), value if count is None else count)
                            )
        return points

    def counted(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """The points of counter ``name`` that counted something (every outcome is reported)."""
        return [(attributes, value) for attributes, value in self.metric(name) if value]


def make_otel(**tracer_options: Any) -> Otel:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(**tracer_options)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = OpenTelemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return Otel(spans, reader, tracer_provider, telemetry)


@pytest.fixture
def otel() -> Iterator[Otel]:
    recorded = make_otel()
    yield recorded
    recorded.tracer_provider.shutdown()


@pytest.fixture
async def transport() -> AsyncIterator[FakeTransport]:
    yield FakeTransport(lambda sent: response(200, OK))


def make_client(transport: FakeTransport, otel: Otel | None, **kwargs: Any) -> mxo.MXOClient:
    kwargs.setdefault("clock", FakeClock())
    kwargs.setdefault("telemetry", None if otel is None else otel.telemetry)
    return mxo.MXOClient(
        "https://eu2.thunderhead.com", SITE_KEY, "client-id", SECRET, transport=transport, **kwargs
    )


def sequence(*answers: object) -> Any:
    """A handler answering with each item in turn (exceptions are raised), then the last forever."""
    queue = list(answers)

    def handler(sent: Sent) -> object:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return handler


def attr(item: Any, name: str) -> Any:
    """Attribute ``name`` of a span or span event."""
    return (item.attributes or {})[name]


def events(span: ReadableSpan) -> list[str]:
    return [event.name for event in span.events]


# -- off: no import, no cost --------------------------------------------------------------------


def test_importing_the_package_imports_no_opentelemetry() -> None:
    """``import mxo_async`` and a client without telemetry load no opentelemetry module."""
    code = (
        "import sys, mxo_async\n"
        "client = mxo_async.MXOClient('https://eu2.thunderhead.com', 'ONE-A-1', 'i', 's')\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert "[]" == done.stdout.strip()


async def test_a_client_without_telemetry_keeps_the_plain_call_path(
    transport: FakeTransport,
) -> None:
    """Telemetry off: the caller's run is the class's own (no wrapper), and no span is made."""
    async with make_client(transport, None) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
        wrapped = {"run" in vars(client._calls), "run" in vars(client._token_calls)}
    assert {False} == wrapped


def test_telemetry_true_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without opentelemetry installed, telemetry=True raises ImportError naming the extra."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "mxo_async.otel", raising=False)
    with pytest.raises(ImportError, match=r"mxo-async\[otel\]"):
        mxo.MXOClient("https://eu2.thunderhead.com", SITE_KEY, "i", "s", telemetry=True)


def test_telemetry_refuses_what_it_cannot_use() -> None:
    """A telemetry argument that is neither a flag nor a provider is a ValidationError."""
    with pytest.raises(mxo.ValidationError, match="telemetry"):
        mxo.MXOClient("https://eu2.thunderhead.com", SITE_KEY, "i", "s", telemetry="yes")  # type: ignore[arg-type]


async def test_telemetry_true_uses_the_global_providers(transport: FakeTransport) -> None:
    """telemetry=True traces the call path through OpenTelemetry's global providers."""
    async with make_client(transport, None, telemetry=True) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
        assert "run" in vars(client._calls)


# -- one call, one span --------------------------------------------------------------------------


async def test_send_activity_is_one_client_span_with_http_attributes(
    transport: FakeTransport, otel: Otel
) -> None:
    """A send: one CLIENT span named after its URL template, HTTP and mxo attributes, status unset."""
    async with make_client(transport, otel) as client:
        await client.send_activity(ALICE, "web://x", [Activity("p", "t"), Activity("q", "t")])
    (span,) = otel.finished(SEND_SPAN)
    expected = {
        "http.request.method": "POST",
        "server.address": "eu2.thunderhead.com",
        "server.port": 443,
        "url.full": "https://eu2.thunderhead.com/one/oauth2/rt/api/3.1.0/customer/REDACTED/activity",
        "http.response.status_code": 200,
        "mxo.operation": "send_activity",
        "mxo.site_key": site_key_hash(SITE_KEY),
        "mxo.activities": 2,
        "mxo.attempts": 1,
        "mxo.outcome": "ok",
    }
    assert (SpanKind.CLIENT, StatusCode.UNSET, expected) == (
        span.kind,
        span.status.status_code,
        dict(span.attributes or {}),
    )


async def test_mxo_activities_counts_activities_whatever_their_values_say(
    transport: FakeTransport, otel: Otel
) -> None:
    """A value holding the wire key itself does not change the count of activities."""
    tricky = Activity("p", "t", dynamic_proposition='"activityTypeCode":"x"')
    async with make_client(transport, otel) as client:
        await client.send_activity(ALICE, "web://x", [tricky, Activity("q", "t"), tricky])
    (span,) = otel.finished(SEND_SPAN)
    assert 3 == attr(span, "mxo.activities")


async def test_the_token_request_is_a_child_span_of_the_call_that_needed_it(
    transport: FakeTransport, otel: Otel
) -> None:
    """The first call fetches the token: its span is the token span's parent, and notes the refresh."""
    async with make_client(transport, otel) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    (call,) = otel.finished(SEND_SPAN)
    (token,) = otel.finished(TOKEN_SPAN)
    assert token.parent is not None
    assert (call.context.span_id, "token") == (
        token.parent.span_id,
        attr(token, "mxo.operation"),
    )
    assert ["mxo.token_refreshed"] == events(call)  # one attempt: no attempt event


async def test_the_call_span_is_current_while_its_attempts_run(otel: Otel) -> None:
    """The transport runs inside the call's span (what makes aiohttp's HTTP spans its children)."""
    seen: list[str] = []

    def handler(sent: Sent) -> Any:
        seen.append(getattr(trace.get_current_span(), "name", "none"))
        return response(200, OK)

    async with make_client(FakeTransport(handler), otel) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    assert [SEND_SPAN] == seen


async def test_the_call_span_is_a_child_of_the_callers_span(
    transport: FakeTransport, otel: Otel
) -> None:
    """A call made inside your span (a request handler's) is part of your trace."""
    tracer = otel.tracer_provider.get_tracer("app")
    async with make_client(transport, otel) as client:
        with tracer.start_as_current_span("GET /checkout") as handler:
            await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    (call,) = otel.finished(SEND_SPAN)
    assert call.parent is not None
    assert handler.get_span_context().span_id == call.parent.span_id


async def test_get_structure_and_delete_customer_have_their_spans(otel: Otel) -> None:
    """get_structure and delete_customer: one span each, named after their method and template."""
    transport = FakeTransport(sequence(response(200, {"x": 1}), response(200, {"tids": ["t"]})))
    async with make_client(transport, otel) as client:
        await client.get_structure(ALICE, "web://x", "offers")
        await client.delete_customer(ALICE)
    names = {s.name: attr(s, "mxo.operation") for s in otel.finished() if s.name != TOKEN_SPAN}
    assert {
        "POST /one/oauth2/rt/api/{apiVersion}/customer/{siteKey}/structure": "get_structure",
        "DELETE /one/oauth2/rt/api/{apiVersion}/customer/{siteKey}": "delete_customer",
    } == names


async def test_no_secret_customer_key_or_site_key_is_ever_recorded(
    transport: FakeTransport, otel: Otel
) -> None:
    """Across spans, events and metric attributes, no key, secret, token or site key appears."""
    transport.handler = sequence(response(401), response(503), response(200, OK))
    async with make_client(transport, otel) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
        await client.delete_customer(ALICE)
    texts = [str(dict(s.attributes or {})) + str([dict(e.attributes or {}) for e in s.events])
             for s in otel.finished()]  # fmt: skip
    texts += [str(otel.reader.get_metrics_data())]
    leaked = [
        needle
        for needle in ("alice@example.com", SECRET, "tok-SECRET-1", SITE_KEY, "client-id")
        if any(needle in text for text in texts)
    ]
    assert [] == leaked


# -- outcomes ------------------------------------------------------------------------------------


async def test_a_retried_call_records_each_attempt_and_the_retry(otel: Otel) -> None:
    """503 then 200: attempts 2, events attempt/retry/attempt, the retry's reason and delay."""
    transport = FakeTransport(sequence(response(503), response(200, OK)))
    async with make_client(transport, otel) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    (span,) = otel.finished(SEND_SPAN)
    retry = next(e for e in span.events if e.name == "mxo.retry")
    assert (2, "ok", 1) == (
        attr(span, "mxo.attempts"),
        attr(span, "mxo.outcome"),
        attr(span, "http.request.resend_count"),
    )
    assert ["mxo.token_refreshed", "mxo.attempt", "mxo.retry", "mxo.attempt"] == events(span)
    assert ("HTTP 503", 1) == (
        attr(retry, "mxo.retry.reason"),
        attr(retry, "mxo.attempt"),
    )
    assert attr(retry, "mxo.retry.delay") >= 0


async def test_retries_are_counted_by_reason(otel: Otel) -> None:
    """mxo.client.retries: one point per operation and reason."""
    transport = FakeTransport(sequence(response(503), response(429), response(200, OK)))
    async with make_client(transport, otel) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    points = sorted((a["mxo.retry.reason"], v) for a, v in otel.counted("mxo.client.retries"))
    assert [("HTTP 429", 1), ("HTTP 503", 1)] == points
    assert [({"mxo.operation": "send_activity"}, 1)] == otel.counted("mxo.client.rate_limited")


async def test_a_401_replay_shows_two_attempts_and_a_second_token_span(otel: Otel) -> None:
    """A 401 drops the token and replays once: both token spans are the call's children."""
    transport = FakeTransport(sequence(response(401), response(200, OK)))
    async with make_client(transport, otel) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    (span,) = otel.finished(SEND_SPAN)
    tokens = otel.finished(TOKEN_SPAN)
    assert (True, 2, "ok") == (
        attr(span, "mxo.token_replayed"),
        attr(span, "mxo.attempts"),
        attr(span, "mxo.outcome"),
    )
    assert [span.context.span_id] * 2 == [t.parent.span_id for t in tokens if t.parent]
    assert [({"mxo.operation": "token", "mxo.outcome": "ok"}, 2)] == otel.counted(
        "mxo.client.token.requests"
    )


async def test_a_rejected_activity_is_an_error_span_with_its_codes(otel: Otel) -> None:
    """A 200 listing a rejected activity: outcome rejected, status ERROR, the code, not the message."""
    transport = FakeTransport(lambda sent: response(200, REJECTED))
    async with make_client(transport, otel) as client:
        with pytest.raises(mxo.RejectedActivitiesError):
            await client.send_activity(ALICE, "web://x", Activity("nope", "t"))
    (span,) = otel.finished(SEND_SPAN)
    assert (
        "rejected",
        StatusCode.ERROR,
        1,
        ("INVALID_PROPOSITION_CODE",),
        "RejectedActivitiesError",
    ) == (
        attr(span, "mxo.outcome"),
        span.status.status_code,
        attr(span, "mxo.rejected"),
        attr(span, "mxo.rejected.codes"),
        attr(span, "error.type"),
    )


async def test_an_ambiguous_send_is_an_error_with_its_own_attribute(otel: Otel) -> None:
    """A reset after sending: outcome ambiguous, mxo.ambiguous, status ERROR saying so."""
    transport = FakeTransport(sequence(TransportError("reset")))
    async with make_client(transport, otel) as client:
        with pytest.raises(mxo.AmbiguousDeliveryError):
            await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    (span,) = otel.finished(SEND_SPAN)
    assert ("ambiguous", True, StatusCode.ERROR, "ambiguous: AmbiguousDeliveryError") == (
        attr(span, "mxo.outcome"),
        attr(span, "mxo.ambiguous"),
        span.status.status_code,
        span.status.description,
    )


async def test_a_failed_call_carries_the_status_as_error_type(otel: Otel) -> None:
    """A 400: outcome failed, error.type '400', status ERROR with the server's error code."""
    body = {"errorCode": "INVALID_REQUEST", "errorMessage": "alice@example.com is bad"}
    transport = FakeTransport(lambda sent: response(400, body))
    async with make_client(transport, otel) as client:
        with pytest.raises(mxo.BadRequestError):
            await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    (span,) = otel.finished(SEND_SPAN)
    assert ("failed", "400", "failed: HTTP 400 INVALID_REQUEST") == (
        attr(span, "mxo.outcome"),
        attr(span, "error.type"),
        span.status.description,
    )


async def test_calls_are_counted_by_operation_and_outcome(otel: Otel) -> None:
    """mxo.client.calls: a point per operation and outcome, zero included (dashboards see rates)."""
    transport = FakeTransport(
        sequence(response(200, OK), response(200, REJECTED), TransportError("reset"))
    )
    async with make_client(transport, otel) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
        for _ in range(2):
            with pytest.raises(mxo.MXOError):
                await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    counted = sorted((a["mxo.outcome"], v) for a, v in otel.metric("mxo.client.calls"))
    assert [("ambiguous", 1), ("failed", 0), ("ok", 1), ("rejected", 1)] == counted


async def test_attempt_durations_are_recorded_per_status_class(otel: Otel) -> None:
    """http.client.request.duration: a point per status, and one for the attempt that got none."""
    transport = FakeTransport(
        sequence(TransportError("refused", request_sent=False), response(503), response(200, OK))
    )
    async with make_client(transport, otel) as client:
        await client.delete_customer(ALICE)
    points = sorted(
        (a["mxo.status_class"], a.get("error.type", ""), v)
        for a, v in otel.metric("http.client.request.duration")
        if a["mxo.operation"] == "delete_customer"
    )
    assert [("2xx", "", 1), ("5xx", "503", 1), ("none", "TransportError", 1)] == points


async def test_a_sampled_out_call_still_counts(transport: FakeTransport) -> None:
    """With every span sampled out, the call works and its metrics are recorded."""
    otel = make_otel(sampler=ALWAYS_OFF)
    async with make_client(transport, otel) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    assert ([], [({"mxo.operation": "send_activity", "mxo.outcome": "ok"}, 1)]) == (
        otel.finished(),
        otel.counted("mxo.client.calls"),
    )


class Broken(SpanProcessor):
    """A span processor that raises when a span ends (a broken exporter pipeline)."""

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("exporter down")


async def test_a_broken_telemetry_pipeline_changes_no_call(
    transport: FakeTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """Span ends raise, yet the call returns its result and the failure is logged once."""
    otel = make_otel()
    otel.tracer_provider.add_span_processor(Broken())
    async with make_client(transport, otel) as client:
        results = [
            await client.send_activity(ALICE, "web://x", Activity("p", "t")) for _ in range(3)
        ]
    logged = [r for r in caplog.records if "telemetry failed" in r.getMessage()]
    assert (["t-1"] * 3, 1) == ([r.tid for r in results], len(logged))


async def test_your_on_event_still_receives_every_event(
    transport: FakeTransport, otel: Otel
) -> None:
    """Telemetry observes events first, then passes each to your callback, unchanged."""
    seen: list[str] = []
    async with make_client(
        transport, otel, on_event=lambda e: seen.append(type(e).__name__)
    ) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    assert [
        "RequestSent",
        "ResponseReceived",
        "TokenRefreshed",
        "RequestSent",
        "ResponseReceived",
    ] == seen


async def test_a_throttle_wait_is_a_span_event_and_a_metric(otel: Otel) -> None:
    """At one request per second, the second call waits for the rate: an event and a measurement."""
    clock = FakeClock()
    limits = Limits(rate=1.0, burst=1)
    async with make_client(
        FakeTransport(lambda s: response(200, OK)), otel, clock=clock, limits=limits
    ) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    first, second = otel.finished(SEND_SPAN)
    throttled = [e for e in second.events if e.name == "mxo.throttled"]
    assert ("mxo.throttled" in events(first), 1) == (False, len(throttled))
    assert "rate" == attr(throttled[0], "mxo.throttle.reason")
    assert [({"mxo.throttle.reason": "rate"}, 1)] == otel.metric(
        "mxo.client.throttle.wait.duration"
    )


async def test_the_throttle_gauges_observe_the_client(transport: FakeTransport, otel: Otel) -> None:
    """The throttle's limit and in-flight gauges report this client by its hashed site key."""
    async with make_client(transport, otel, limits=Limits(max_connections=8)) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
        limit = otel.metric("mxo.client.throttle.limit")
        in_flight = otel.metric("mxo.client.throttle.in_flight")
    identity = {"mxo.site_key": site_key_hash(SITE_KEY), "server.address": "eu2.thunderhead.com"}
    assert ([(identity, 8)], [(identity, 0)]) == (limit, in_flight)


# -- fan-out, batcher, journal -------------------------------------------------------------------


async def test_fan_out_items_are_traces_of_their_own_linked_to_the_fan_out(
    transport: FakeTransport, otel: Otel
) -> None:
    """send_activities: one fan-out span in the caller's trace; each item a root span linking to it."""
    tracer = otel.tracer_provider.get_tracer("app")
    requests = [ActivityRequest(Customer.by_key(f"c{n}"), "web://x", [Activity("p", "t")])
                for n in range(3)]  # fmt: skip
    async with make_client(transport, otel) as client:
        with tracer.start_as_current_span("import job") as job:
            async with client.send_activities(requests, concurrency=2) as outcomes:
                assert 3 == len([o async for o in outcomes if o.ok])
    (fan_out,) = otel.finished("send_activities")
    items = otel.finished(SEND_SPAN)
    assert fan_out.parent is not None and job.get_span_context().span_id == fan_out.parent.span_id
    assert [None] * 3 == [item.parent for item in items]
    assert 3 == len({item.context.trace_id for item in items} - {fan_out.context.trace_id})
    assert [[fan_out.context.span_id]] * 3 == [
        [link.context.span_id for link in item.links] for item in items
    ]
    assert (3, 0, SpanKind.INTERNAL) == (
        attr(fan_out, "mxo.fanout.succeeded"),
        attr(fan_out, "mxo.fanout.failed"),
        fan_out.kind,
    )


async def test_the_fan_out_in_flight_gauge_counts_calls_in_progress(otel: Otel) -> None:
    """mxo.fanout.in_flight reports the calls a running fan-out has begun and not settled."""
    seen: list[list[tuple[dict[str, Any], Any]]] = []

    def handler(sent: Sent) -> Any:
        if not seen:
            seen.append(otel.metric("mxo.fanout.in_flight"))
        return response(200, OK)

    requests = [ActivityRequest(ALICE, "web://x", [Activity("p", "t")])]
    async with make_client(FakeTransport(handler), otel) as client:
        async with client.send_activities(requests) as outcomes:
            async for _ in outcomes:
                pass
    assert [1] == [value for _, value in seen[0]]


async def test_a_batch_request_links_to_the_spans_that_submitted_into_it(
    transport: FakeTransport, otel: Otel
) -> None:
    """Two submitters, one batch: its span starts a trace of its own, linked to both submitters."""
    tracer = otel.tracer_provider.get_tracer("app")
    async with make_client(transport, otel) as client:
        async with client.batcher(max_activities=2) as batcher:
            with tracer.start_as_current_span("first") as first:
                await batcher.submit(ALICE, "web://x", Activity("p", "t"))
            with tracer.start_as_current_span("second") as second:
                await batcher.submit(ALICE, "web://x", Activity("q", "t"))
            await batcher.flush()
    (span,) = otel.finished(SEND_SPAN)
    assert (None, "size", 2) == (
        span.parent,
        attr(span, "mxo.batch.reason"),
        attr(span, "mxo.activities"),
    )
    assert [first.get_span_context().span_id, second.get_span_context().span_id] == [
        link.context.span_id for link in span.links
    ]
    assert [({"mxo.batch.reason": "size"}, 1)] == otel.metric("mxo.batcher.flush.size")


async def test_the_batcher_pending_gauge_counts_buffered_activities(
    transport: FakeTransport, otel: Otel
) -> None:
    """mxo.batcher.pending reports the activities a batcher holds before they are sent."""
    async with make_client(transport, otel) as client:
        async with client.batcher(max_latency=60) as batcher:
            for n in range(3):
                await batcher.submit(Customer.by_key(f"c{n}"), "web://x", Activity("p", "t"))
            pending = [value for _, value in otel.metric("mxo.batcher.pending")]
    assert [3] == pending


async def test_a_journaled_sweep_records_the_journal_lag(otel: Otel, tmp_path: Path) -> None:
    """delete_customers(journal=...): one journal lag measurement per customer, and a sweep span."""
    transport = FakeTransport(lambda sent: response(200, {"tids": ["t"]}))
    customers = [Customer.by_key(f"c{n}") for n in range(4)]
    async with make_client(transport, otel) as client:
        async with client.delete_customers(customers, journal=tmp_path / "j.jsonl") as outcomes:
            assert 4 == len([o async for o in outcomes if o.ok])
    assert [4] == [count for _, count in otel.metric("mxo.journal.lag")]
    assert 1 == len(otel.finished("delete_customers"))


async def test_retry_policy_and_cancellation_keep_their_outcomes(otel: Otel) -> None:
    """With retry_ambiguous, a reset then a 200 is an ok span of two attempts."""
    transport = FakeTransport(sequence(TransportError("reset"), response(200, OK)))
    async with make_client(transport, otel, retry=RetryPolicy(retry_ambiguous=True)) as client:
        await client.send_activity(ALICE, "web://x", Activity("p", "t"))
    (span,) = otel.finished(SEND_SPAN)
    assert ("ok", 2) == (attr(span, "mxo.outcome"), attr(span, "mxo.attempts"))
