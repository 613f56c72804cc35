"""The seam telemetry plugs into: what the call path tells it, and nothing at all when it is off.

``MXOClient(telemetry=...)`` resolves its argument here into one client's :class:`Telemetry`, or
None. None is the default, and then nothing of telemetry exists: no module of OpenTelemetry is
imported, no event is built for it, and the call path pays nothing, not even a check per call
(``Caller`` replaces its ``run`` with a traced one only when telemetry is on).

The OpenTelemetry implementation lives in :mod:`mxo_async.otel` (extra ``otel``) and is imported
only when telemetry is turned on. This module imports nothing from it: the protocols below are
what the call path, the fan-out, the batcher and the journal call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import ValidationError

if TYPE_CHECKING:
    from ._calls import Caller
    from ._clock import Clock
    from ._events import EventHandler
    from ._fanout import Progress
    from ._models import Customer, Erasure, Outcome
    from ._transport import Transport

__all__ = [
    "INSTALL_HINT",
    "BatcherTelemetry",
    "FanOutTelemetry",
    "FanOutTrace",
    "Telemetry",
    "TelemetryProvider",
    "resolve",
]

Run = Callable[[Any], Awaitable[tuple[Any, int]]]
Record = Callable[["Outcome[Customer, Erasure]"], Awaitable[None]]

INSTALL_HINT = 'telemetry needs the "otel" extra: pip install "mxo-async[otel]"'


class FanOutTrace(Protocol):
    """One running fan-out: its span, and the link its items' spans carry to it."""

    def worker(self) -> None:
        """Called first thing in each worker task: its calls link to the fan-out's span."""

    def end(self, progress: Progress) -> None:
        """The fan-out closed: end its span with the counts."""


class FanOutTelemetry(Protocol):
    """Telemetry of the fan-outs of one kind (``send_activities``, ``delete_customers``)."""

    def started(self, progress: Progress, concurrency: int) -> FanOutTrace: ...

    def journaled(self, record: Record) -> Record:
        """``record`` (the journal's), measuring the lag from settled to on disk."""


class BatcherTelemetry(Protocol):
    """Telemetry of one batcher: links from each batch request to the submits it carries."""

    def submitted(self, seq: int) -> None:
        """A submit joined batch ``seq`` (called in the submitter's context)."""

    def sending(self, seq: int, reason: str | None, activities: int) -> None:
        """Batch ``seq`` is about to be sent (called in the task that sends it)."""


class Telemetry(Protocol):
    """One client's telemetry, bound to its target."""

    def listen(self, handler: EventHandler | None) -> EventHandler:
        """An event handler that observes every event, then passes it on to ``handler``."""

    def trace_calls(self, caller: Caller) -> Run:
        """``caller.run``, traced: one span per logical call, current while its attempts run
        (the token request's span is a child of the call that needed the token)."""

    def transport(self, transport: Transport) -> Transport:
        """``transport``, timing each attempt (the duration histogram, the span's attempts)."""

    def watch(self, client: Any) -> None:
        """Observe ``client`` (weakly) for the throttle gauges."""

    def fan_out(self, operation: str) -> FanOutTelemetry: ...

    def batcher(self, batcher: Any) -> BatcherTelemetry: ...


class TelemetryProvider(Protocol):
    """What ``MXOClient(telemetry=...)`` accepts besides True: binds itself to one client."""

    def bind(self, target: Mapping[str, str], clock: Clock) -> Telemetry: ...


def resolve(
    option: bool | TelemetryProvider | None, target: Mapping[str, str], clock: Clock
) -> Telemetry | None:
    """The client's telemetry for ``MXOClient(telemetry=option)``: None when off.

    ``True`` uses OpenTelemetry's global tracer and meter providers (:mod:`mxo_async.otel`);
    a provider object (``mxo_async.otel.OpenTelemetry(...)``) is bound as given.
    """
    if option is None or option is False:
        return None
    if option is True:
        try:
            from .otel import default_provider
        except ImportError as exc:
            if (exc.name or "").partition(".")[0] != "opentelemetry":
                raise
            raise ImportError(INSTALL_HINT, name=exc.name) from None
        option = default_provider()
    bind = getattr(option, "bind", None)
    if not callable(bind):
        raise ValidationError(
            "telemetry", f"must be True, False, None or a provider, got {type(option).__name__}"
        )
    telemetry: Telemetry = bind(target, clock)
    return telemetry
