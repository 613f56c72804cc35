"""OpenTelemetry traces and metrics for mxo_async (extra ``otel``: ``pip install "mxo-async[otel]"``).

Turn it on with ``MXOClient(..., telemetry=True)`` (OpenTelemetry's global tracer and meter
providers), or ``telemetry=OpenTelemetry(tracer_provider=..., meter_provider=...)`` for providers
of your own. Only this module imports OpenTelemetry, and only once telemetry is turned on.

Traces
    One span per logical call (``send_activity``, ``get_structure``, ``delete_customer``, each
    batch request of a batcher), kind CLIENT, named ``{method} {url.template}`` after the HTTP
    client semantic conventions, and current while its attempts run: the spans of an HTTP
    instrumentation (``opentelemetry-instrumentation-aiohttp-client``) are its children. Retries
    (delay, reason), throttle waits and token refreshes are span events, and so is each attempt
    when there is more than one; the token request is a child span of the call that needed it.
    ``mxo.outcome`` is ``ok``, ``rejected``, ``ambiguous`` or ``failed``; every outcome but ``ok``
    sets the status to ERROR, and an ambiguous call also carries ``mxo.ambiguous=true`` (it may
    have been applied). The site key is hashed (``mxo.site_key``; ``REDACTED`` in ``url.full``);
    no customer identifier (masked or not), secret, token or error message is ever recorded.

    Fan-out and batcher: a fan-out has one span (INTERNAL, in the caller's trace) and each item's
    call span starts a trace of its own with a link to it; a batch request's span starts a trace of
    its own with links to the spans that submitted into it (at most :data:`MAX_LINKS`). A million
    items make a million small traces and one fan-out span, never one trace of a million spans.

Metrics (instrument names after the semantic conventions; ``mxo.*`` for our own)
    ``http.client.request.duration`` (s, per attempt: method, server, status code and class,
    ``mxo.operation``, ``error.type``), the counters ``mxo.client.calls`` (per operation and
    outcome), ``mxo.client.retries`` (per operation and reason), ``mxo.client.rate_limited`` (429
    answers) and ``mxo.client.token.requests`` (per outcome), ``mxo.client.throttle.wait.duration``
    (s, per reason: ``rate``, ``pause``, ``concurrency``), the gauges
    ``mxo.client.throttle.limit``, ``.rate``, ``.in_flight``, ``.waiting`` and ``.pause`` (s
    left), ``mxo.batcher.flush.size`` (activities per request, per reason), the gauges
    ``mxo.batcher.pending`` and ``mxo.fanout.in_flight``, and ``mxo.journal.lag`` (s from a
    settled delete to its journal line on disk).

Cost: with the SDK, a span and a histogram measurement cost the SDK some 25-50 µs per call on a
small VM; the counters are therefore counted here and reported by asynchronous counters, and the
first attempt's event is only added when a second attempt follows (benchmarks/README.md).
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from time import time_ns
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import (
    CallbackOptions,
    Meter,
    MeterProvider,
    Observation,
    get_meter_provider,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from ._errors import AmbiguousDeliveryError, APIStatusError, RejectedActivitiesError
from ._events import (
    BatchFlushed,
    Event,
    EventHandler,
    RetryScheduled,
    Throttled,
    TokenRefreshed,
)
from ._version import __version__

if TYPE_CHECKING:
    from ._calls import Caller
    from ._clock import Clock
    from ._fanout import Progress
    from ._models import Customer, Erasure, Outcome
    from ._sending import Call
    from ._transport import RawResponse, Transport

__all__ = ["MAX_LINKS", "OpenTelemetry", "default_provider"]

_log = logging.getLogger("mxo_async")

Attributes = dict[str, AttributeValue]
Record = Callable[["Outcome[Customer, Erasure]"], Awaitable[None]]

MAX_LINKS = 32
"""Most links a batch request's span carries to the submits it coalesced."""

OK, REJECTED, AMBIGUOUS, FAILED = "ok", "rejected", "ambiguous", "failed"
_OUTCOMES = (OK, REJECTED, AMBIGUOUS, FAILED)
# The semantic conventions' advice for http.client.request.duration.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100)
_TOKEN = "token"  # noqa: S105 - the token request's operation name, not a secret


class _Origin:
    """Where the next call span of a task comes from: a new trace linked to ``links``."""

    __slots__ = ("attributes", "links")

    def __init__(self, links: tuple[Link, ...], attributes: Attributes | None = None) -> None:
        self.links = links
        self.attributes = attributes


# The context of a span that starts a trace of its own (a Context is immutable: built once).
_NO_PARENT = trace.set_span_in_context(trace.INVALID_SPAN)
# Set in a fan-out worker's or a batch request's task; read (and cleared for the call's duration,
# so the token request stays its child) by the next call span.
_ORIGIN: contextvars.ContextVar[_Origin | None] = contextvars.ContextVar(
    "mxo_async_otel_origin", default=None
)
# How many activities a send carries, read off its body as built (orjson writes every activity
# with this key, once, and a JSON string value cannot hold it unescaped): a byte count costs a
# fraction of a microsecond, where handing the number down the call path would cost a layer.
_ACTIVITY_KEY = b'"activityTypeCode":'


class _Operation:
    """Everything about one kind of call at one URL that does not change from call to call."""

    __slots__ = ("attempt_attributes", "attributes", "counts_activities", "idempotent", "name",
                 "outcomes", "rate_limited", "server", "span_name", "url")  # fmt: skip

    def __init__(
        self,
        call: Call[Any],
        site_key: str,
        api_version: str,
        site_hash: str,
        instruments: _Instruments,
    ) -> None:
        request = call.request
        self.name = call.operation.name
        self.idempotent = call.operation.idempotent
        self.url = request.url
        parts = urlsplit(request.url)
        segment = quote(site_key, safe="")
        template = parts.path.replace(f"/customer/{segment}", "/customer/{siteKey}").replace(
            f"/api/{quote(api_version, safe='')}/", "/api/{apiVersion}/"
        )
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.server: Attributes = {
            "http.request.method": request.method,
            "server.address": parts.hostname or "",
            "server.port": port,
            "mxo.operation": self.name,
        }
        self.span_name = f"{request.method} {template}"
        # Each span attribute costs the SDK about a microsecond: only what a reader needs (the
        # span's name carries url.template).
        self.attributes: Attributes = {
            **self.server,
            "url.full": request.url.split("?", 1)[0].replace(
                f"/customer/{segment}", "/customer/REDACTED"
            ),
            "mxo.site_key": site_hash,
        }
        counted = "mxo.client.token.requests" if self.name == _TOKEN else "mxo.client.calls"
        self.outcomes = {
            outcome: instruments.count(
                counted, {"mxo.operation": self.name, "mxo.outcome": outcome}
            )
            for outcome in _OUTCOMES
        }
        self.attempt_attributes: dict[int | str, Attributes] = {}
        self.rate_limited: Attributes = {"mxo.operation": self.name}
        self.counts_activities = self.name == "send_activity"

    def attempt(self, status: int | None, error: str | None = None) -> Attributes:
        """Attributes of one attempt's duration: its status (class) or its error type."""
        key: int | str = status if status is not None else f"error:{error}"
        cached = self.attempt_attributes.get(key)
        if cached is None:
            cached = dict(self.server)
            if status is not None:
                cached["http.response.status_code"] = status
                cached["mxo.status_class"] = f"{status // 100}xx"
                if status >= 400:
                    cached["error.type"] = str(status)
            else:
                cached["mxo.status_class"] = "none"
                cached["error.type"] = error or "unknown"
            self.attempt_attributes[key] = cached
        return cached


class _Active:
    """The call span current in a task, and its attempt in progress."""

    __slots__ = ("attempts", "first_sent", "operation", "recording", "span", "status")

    def __init__(self, operation: _Operation, span: Span) -> None:
        self.operation = operation
        self.span = span
        self.recording = span.is_recording()
        self.attempts = 0
        self.status: int | None = None
        # When the first attempt left (ns), until a second one makes attempt events worth
        # their cost: a call of one attempt has none (its span says it all).
        self.first_sent: int | None = None

    def note_first_attempt(self) -> None:
        first, self.first_sent = self.first_sent, None
        if first is not None and self.recording:
            self.span.add_event("mxo.attempt", {"mxo.attempt": 1}, timestamp=first)


class _Count:
    """A cumulative count with its attributes, reported by an asynchronous counter.

    Counting is a Python addition here; a synchronous counter's ``add`` costs the SDK about
    10 µs on the benchmark machine (measured), for each call.
    """

    __slots__ = ("attributes", "value")

    def __init__(self, attributes: Attributes) -> None:
        self.attributes = attributes
        self.value = 0


_ACTIVE: contextvars.ContextVar[_Active | None] = contextvars.ContextVar(
    "mxo_async_otel_active", default=None
)


class _Instruments:
    """The tracer, meter and instruments of one :class:`OpenTelemetry` (created once)."""

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ) -> None:
        self.tracer = trace.get_tracer("mxo_async", __version__, tracer_provider)
        meter: Meter = (meter_provider or get_meter_provider()).get_meter("mxo_async", __version__)
        self.attempt_duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests (one per attempt).",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        # Counts are kept here and reported by asynchronous counters (see _Count).
        self._counts: dict[str, dict[frozenset[tuple[str, AttributeValue]], _Count]] = {}
        counters = (
            ("mxo.client.calls", "{call}", "Logical MXO calls, by operation and outcome."),
            ("mxo.client.retries", "{retry}", "Retries scheduled, by operation and reason."),
            ("mxo.client.rate_limited", "{response}", "429 answers, by operation."),
            ("mxo.client.token.requests", "{request}", "Token requests, by outcome."),
        )
        for name, unit, description in counters:
            table = self._counts[name] = {}
            meter.create_observable_counter(
                name, [_observe_counts(table)], unit=unit, description=description
            )
        self.throttle_wait = meter.create_histogram(
            "mxo.client.throttle.wait.duration",
            unit="s",
            description="Time calls waited for the throttle, by reason (rate, pause, concurrency).",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.flush_size = meter.create_histogram(
            "mxo.batcher.flush.size",
            unit="{activity}",
            description="Activities per batch request, by reason.",
            explicit_bucket_boundaries_advisory=_SIZE_BUCKETS,
        )
        self.journal_lag = meter.create_histogram(
            "mxo.journal.lag",
            unit="s",
            description="From a settled delete to its erasure journal line on disk.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.clients: weakref.WeakSet[_ClientTelemetry] = weakref.WeakSet()
        self.batchers: weakref.WeakSet[_BatcherTrace] = weakref.WeakSet()
        self.fan_outs: set[_FanOutTrace] = set()
        gauges: tuple[tuple[str, str, str, Callable[[CallbackOptions], Iterable[Observation]]], ...] = (
            ("mxo.client.throttle.limit", "{request}", "Adaptive concurrency limit.", self._throttle("limit")),
            ("mxo.client.throttle.rate", "{request}/s", "Allowed request rate (when limited).", self._throttle("rate")),
            ("mxo.client.throttle.in_flight", "{request}", "Attempts holding a throttle slot.", self._throttle("in_flight")),
            ("mxo.client.throttle.waiting", "{call}", "Calls waiting for the throttle.", self._throttle("waiting")),
            ("mxo.client.throttle.pause", "s", "Time left in a server-requested pause.", self._throttle("pause_remaining")),
            ("mxo.batcher.pending", "{activity}", "Activities buffered or in flight in batchers.", self._pending),
            ("mxo.fanout.in_flight", "{call}", "Fan-out calls begun and not settled.", self._in_flight),
        )  # fmt: skip
        for name, unit, description, callback in gauges:
            meter.create_observable_gauge(name, [callback], unit=unit, description=description)

    def count(self, name: str, attributes: Attributes) -> _Count:
        """The count of metric ``name`` with ``attributes`` (one per set, shared by clients)."""
        table = self._counts[name]
        key = frozenset(attributes.items())
        counted = table.get(key)
        if counted is None:
            counted = table[key] = _Count(attributes)
        return counted

    def _throttle(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for telemetry in list(self.clients):
                client = telemetry.client()
                if client is None:
                    continue
                value = getattr(client._throttle.stats, field)
                if value is not None:
                    yield Observation(value, telemetry.identity)

        return observe

    def _pending(self, options: CallbackOptions) -> Iterable[Observation]:
        totals: dict[_ClientTelemetry, int] = {}
        for trace_ in list(self.batchers):
            batcher = trace_.batcher()
            if batcher is not None:
                totals[trace_.telemetry] = totals.get(trace_.telemetry, 0) + batcher.stats.pending
        return [Observation(total, telemetry.identity) for telemetry, total in totals.items()]

    def _in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        totals: dict[tuple[_ClientTelemetry, str], int] = {}
        for fan_out in list(self.fan_outs):
            key = (fan_out.owner.telemetry, fan_out.owner.operation)
            totals[key] = totals.get(key, 0) + fan_out.progress.in_flight
        return [
            Observation(total, {**telemetry.identity, "mxo.operation": operation})
            for (telemetry, operation), total in totals.items()
        ]


def _observe_counts(
    table: dict[frozenset[tuple[str, AttributeValue]], _Count],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        # The reader's thread: list() copies the table in one step, whatever the loop adds.
        return [Observation(counted.value, counted.attributes) for counted in list(table.values())]

    return observe


class OpenTelemetry:
    """Telemetry through OpenTelemetry: ``MXOClient(..., telemetry=OpenTelemetry(...))``.

    Without providers, OpenTelemetry's global ones are used (what ``telemetry=True`` does). One
    instance can serve many clients: they share its instruments.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._instruments: _Instruments | None = None

    def bind(self, target: Mapping[str, str], clock: Clock) -> _ClientTelemetry:
        """The telemetry of one client (``target`` is ``MXOClient.target``)."""
        if self._instruments is None:
            self._instruments = _Instruments(self._tracer_provider, self._meter_provider)
        return _ClientTelemetry(self._instruments, target, clock)


_default: OpenTelemetry | None = None


def default_provider() -> OpenTelemetry:
    """The :class:`OpenTelemetry` of ``telemetry=True``: the global providers, shared."""
    global _default
    if _default is None:
        _default = OpenTelemetry()
    return _default


def site_key_hash(site_key: str) -> str:
    """``mxo.site_key``: stable across processes, comparable, and not the key itself."""
    return "sha256:" + hashlib.sha256(site_key.encode()).hexdigest()[:16]


class _ClientTelemetry:
    """One client's telemetry: its call spans, event observer and gauges (see the module doc)."""

    def __init__(self, instruments: _Instruments, target: Mapping[str, str], clock: Clock) -> None:
        self._inst = instruments
        self._clock = clock
        self._site_key = target.get("site_key", "")
        self._api_version = target.get("api_version", "")
        self._site_hash = site_key_hash(self._site_key)
        self.identity: Attributes = {
            "mxo.site_key": self._site_hash,
            "server.address": urlsplit(target.get("base_url", "")).hostname or "",
        }
        self._operations: dict[str, _Operation] = {}
        self._client: weakref.ref[Any] | None = None
        self._reason_attributes: dict[tuple[str, str], Attributes] = {}
        self._failures = 0
        self._observers: dict[type, Callable[[Any], None]] = {
            RetryScheduled: self._retry,
            Throttled: self._throttled,
            TokenRefreshed: self._token,
            BatchFlushed: self._flushed,
        }

    # -- wiring ------------------------------------------------------------------------------------

    def client(self) -> Any:
        return None if self._client is None else self._client()

    def watch(self, client: Any) -> None:
        self._client = weakref.ref(client)
        self._inst.clients.add(self)

    def listen(self, handler: EventHandler | None) -> EventHandler:
        observe = self._observe
        if handler is None:
            return observe

        def on_event(event: Event) -> None:
            observe(event)
            handler(event)

        return on_event

    def transport(self, transport: Transport) -> Transport:
        return _TimedTransport(transport, self)

    def fan_out(self, operation: str) -> _FanOutTelemetry:
        return _FanOutTelemetry(self, operation)

    def batcher(self, batcher: Any) -> _BatcherTrace:
        trace_ = _BatcherTrace(self, batcher)
        self._inst.batchers.add(trace_)
        return trace_

    # -- call spans --------------------------------------------------------------------------------

    def _operation(self, call: Call[Any]) -> _Operation:
        operation = self._operations.get(call.request.url)
        if operation is None or operation.name != call.operation.name:
            operation = _Operation(
                call, self._site_key, self._api_version, self._site_hash, self._inst
            )
            self._operations[call.request.url] = operation
        return operation

    def trace_calls(self, caller: Caller) -> Callable[[Call[Any]], Awaitable[tuple[Any, int]]]:
        run = caller.run
        tracer = self._inst.tracer

        async def traced(call: Call[Any]) -> tuple[Any, int]:
            operation = self._operation(call)
            attributes = operation.attributes
            if operation.counts_activities and call.request.body:
                attributes = {
                    **attributes,
                    "mxo.activities": call.request.body.count(_ACTIVITY_KEY),
                }
            origin = _ORIGIN.get()
            links: tuple[Link, ...] | None = None
            parent: otel_context.Context | None = None
            if origin is not None:
                # A fan-out item or a batch request: a trace of its own, linked to its origin.
                parent = _NO_PARENT
                links = origin.links
                if origin.attributes:
                    attributes = {**attributes, **origin.attributes}
                cleared = _ORIGIN.set(None)
            span = tracer.start_span(
                operation.span_name,
                context=parent,
                kind=SpanKind.CLIENT,
                attributes=attributes,
                links=links,
            )
            attached = otel_context.attach(trace.set_span_in_context(span, parent))
            active = _Active(operation, span)
            current = _ACTIVE.set(active)
            try:
                result = await run(call)
            except BaseException as error:
                self._end_safely(active, call, error)
                raise
            else:
                self._end_safely(active, call, None)
                return result
            finally:
                _ACTIVE.reset(current)
                otel_context.detach(attached)
                if origin is not None:
                    _ORIGIN.reset(cleared)

        return traced

    def _end_safely(self, active: _Active, call: Call[Any], error: BaseException | None) -> None:
        try:
            self._end(active, call, error)
        except Exception:  # telemetry never changes what a call returns or raises
            self._failed("ending a span")

    def _failed(self, what: str) -> None:
        self._failures += 1
        if self._failures == 1:
            _log.exception("telemetry failed %s; ignored (logged once)", what)

    def _end(self, active: _Active, call: Call[Any], error: BaseException | None) -> None:
        operation = active.operation
        outcome, error_type = _outcome(operation, call, error)
        operation.outcomes[outcome].value += 1
        span = active.span
        if active.recording:
            attributes: Attributes = {"mxo.attempts": call.attempts, "mxo.outcome": outcome}
            if active.status is not None:
                attributes["http.response.status_code"] = active.status
            if call.attempts > 1:
                attributes["http.request.resend_count"] = call.attempts - 1
            if call.replayed_401:
                attributes["mxo.token_replayed"] = True
            if error is not None:
                description = error_type or type(error).__name__
                attributes["error.type"] = description
                if outcome == AMBIGUOUS:
                    attributes["mxo.ambiguous"] = True
                if isinstance(error, RejectedActivitiesError):
                    codes = sorted({e.code for e in error.rejected if e.code})
                    attributes["mxo.rejected"] = len(error.rejected)
                    attributes["mxo.rejected.codes"] = codes
                    description = f"{len(error.rejected)} activities rejected: {', '.join(codes)}"
                elif isinstance(error, APIStatusError) and error.code:
                    description = f"HTTP {error.status} {error.code}"
                span.set_attributes(attributes)
                span.set_status(Status(StatusCode.ERROR, f"{outcome}: {description}"))
            else:
                span.set_attributes(attributes)
        span.end()

    # -- events ------------------------------------------------------------------------------------

    def _observe(self, event: Event) -> None:
        observer = self._observers.get(type(event))
        if observer is None:
            return
        try:
            observer(event)
        except Exception:  # telemetry never changes what a call does
            self._failed(f"to observe {type(event).__name__}")

    def _retry(self, event: RetryScheduled) -> None:
        labels: Attributes = {"mxo.operation": event.operation, "mxo.retry.reason": event.reason}
        self._count("mxo.client.retries", labels).value += 1
        active = _ACTIVE.get()
        if active is not None and active.recording:
            active.note_first_attempt()
            active.span.add_event(
                "mxo.retry",
                {
                    "mxo.attempt": event.attempt,
                    "mxo.retry.delay": event.delay,
                    "mxo.retry.reason": event.reason,
                },
            )

    def _count(self, name: str, attributes: Attributes) -> _Count:
        """A count of a rare event (a retry, a 429): looked up by its attributes each time."""
        return self._inst.count(name, attributes)

    def _labels(self, name: str, value: str) -> Attributes:
        key = (name, value)
        labels = self._reason_attributes.get(key)
        if labels is None:
            labels = self._reason_attributes[key] = {name: value}
        return labels

    def _throttled(self, event: Throttled) -> None:
        self._inst.throttle_wait.record(
            event.delay, self._labels("mxo.throttle.reason", event.reason)
        )
        active = _ACTIVE.get()
        if active is not None and active.recording:
            active.span.add_event(
                "mxo.throttled",
                {"mxo.throttle.reason": event.reason, "mxo.throttle.delay": event.delay},
            )

    def _token(self, event: TokenRefreshed) -> None:
        active = _ACTIVE.get()
        # A proactive refresh can outlive the call that started it: its span may have ended.
        if active is not None and active.span.is_recording():
            active.span.add_event(
                "mxo.token_refreshed",
                {"mxo.token.reason": event.reason, "mxo.token.expires_in": event.expires_in},
            )

    def _flushed(self, event: BatchFlushed) -> None:
        self._inst.flush_size.record(
            event.activities, self._labels("mxo.batch.reason", event.reason)
        )


class _TimedTransport:
    """The client's transport, timing each attempt of the call current in the task."""

    __slots__ = ("_inner", "_telemetry")

    def __init__(self, inner: Transport, telemetry: _ClientTelemetry) -> None:
        self._inner = inner
        self._telemetry = telemetry

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        time_left: float | None = None,
    ) -> RawResponse:
        active = _ACTIVE.get()
        if active is None:
            return await self._inner.request(method, url, headers, body, time_left)
        active.attempts += 1
        if active.recording:
            if active.attempts == 1:
                active.first_sent = time_ns()
            else:
                active.note_first_attempt()
                active.span.add_event("mxo.attempt", {"mxo.attempt": active.attempts})
        telemetry = self._telemetry
        now = telemetry._clock.now
        operation = active.operation
        started = now()
        try:
            response = await self._inner.request(method, url, headers, body, time_left)
        except Exception as error:
            telemetry._inst.attempt_duration.record(
                now() - started, operation.attempt(None, type(error).__name__)
            )
            raise
        status = active.status = response.status
        telemetry._inst.attempt_duration.record(now() - started, operation.attempt(status))
        if status == 429:
            telemetry._count("mxo.client.rate_limited", operation.rate_limited).value += 1
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _outcome(
    operation: _Operation, call: Call[Any], error: BaseException | None
) -> tuple[str, str | None]:
    """The call's ``mxo.outcome`` under the delivery rule, and its ``error.type``."""
    if error is None:
        return OK, None
    if isinstance(error, RejectedActivitiesError):
        return REJECTED, "RejectedActivitiesError"
    if isinstance(error, AmbiguousDeliveryError):
        return AMBIGUOUS, "AmbiguousDeliveryError"
    if isinstance(error, APIStatusError):
        return FAILED, str(error.status)
    if not isinstance(error, Exception) and not operation.idempotent and call.attempts:
        return AMBIGUOUS, type(error).__name__  # cancelled while a request was out
    return FAILED, type(error).__name__


# -- fan-out, batcher, journal ------------------------------------------------------------------


class _FanOutTelemetry:
    """The fan-outs of one kind of one client."""

    def __init__(self, telemetry: _ClientTelemetry, operation: str) -> None:
        self.telemetry = telemetry
        self.operation = operation

    def started(self, progress: Progress, concurrency: int) -> _FanOutTrace:
        inst = self.telemetry._inst
        span = inst.tracer.start_span(
            self.operation,
            kind=SpanKind.INTERNAL,
            attributes={
                "mxo.operation": self.operation,
                "mxo.site_key": self.telemetry.identity["mxo.site_key"],
                "mxo.fanout.concurrency": concurrency,
            },
        )
        fan_out = _FanOutTrace(self, span, progress)
        inst.fan_outs.add(fan_out)
        return fan_out

    def journaled(self, record: Record) -> Record:
        lag = self.telemetry._inst.journal_lag
        now = self.telemetry._clock.now
        labels = self.telemetry.identity

        async def timed(outcome: Outcome[Customer, Erasure]) -> None:
            started = now()
            await record(outcome)
            lag.record(now() - started, labels)

        return timed


class _FanOutTrace:
    """One running fan-out: its span, and the origin of its items' call spans."""

    def __init__(self, owner: _FanOutTelemetry, span: Span, progress: Progress) -> None:
        self.owner = owner
        self.span = span
        self.progress = progress
        self.origin = _Origin((Link(span.get_span_context()),))

    def worker(self) -> None:
        _ORIGIN.set(self.origin)  # in the worker's own task: every call it makes

    def end(self, progress: Progress) -> None:
        self.owner.telemetry._inst.fan_outs.discard(self)
        self.span.set_attributes(
            {
                "mxo.fanout.started": progress.started,
                "mxo.fanout.succeeded": progress.succeeded,
                "mxo.fanout.failed": progress.failed,
                "mxo.fanout.skipped": progress.skipped,
            }
        )
        self.span.end()


class _BatcherTrace:
    """One batcher: the links of each batch to the spans that submitted into it."""

    def __init__(self, telemetry: _ClientTelemetry, batcher: Any) -> None:
        self.telemetry = telemetry
        self.batcher = weakref.ref(batcher)
        self._links: dict[int, list[Link]] = {}

    def submitted(self, seq: int) -> None:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return
        links = self._links.get(seq)
        if links is None:
            self._links[seq] = [Link(context)]
        elif len(links) < MAX_LINKS and links[-1].context != context:
            links.append(Link(context))

    def sending(self, seq: int, reason: str | None, activities: int) -> None:
        links = tuple(self._links.pop(seq, ()))
        # In the task that sends this batch only: its call span starts a trace of its own.
        _ORIGIN.set(_Origin(links, {"mxo.batch.reason": reason or "flush"}))
