"""Prometheus metrics of a fleet worker (opt-in: extra ``metrics``, ``--metrics-port``).

The worker's counters are read when Prometheus scrapes: nothing is counted twice and nothing
runs between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["serve_metrics"]

# Counters that only grow; everything else numeric is a gauge.
_GAUGES = frozenset({"held", "lag", "started"})


class _WorkerCollector(Collector):
    def __init__(self, kind: str, counters: Callable[[], dict[str, Any]]) -> None:
        self.kind = kind
        self.counters = counters

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        prefix = f"mxo_worker_{self.kind}"
        for name, value in self.counters().items():
            if name == "dead_lettered":
                family = CounterMetricFamily(
                    f"{prefix}_dead_lettered", "Entries dead-lettered, by reason", labels=["reason"]
                )
                for reason, count in value.items():
                    family.add_metric([reason], count)
                yield family
            elif isinstance(value, bool) or not isinstance(value, int | float) or name == "started":
                continue
            elif name in _GAUGES:
                yield GaugeMetricFamily(f"{prefix}_{name}", f"{self.kind} worker: {name}", value)
            else:
                yield CounterMetricFamily(f"{prefix}_{name}", f"{self.kind} worker: {name}", value)


def serve_metrics(port: int, kind: str, counters: Callable[[], dict[str, Any]]) -> None:
    """Serve ``counters()`` (a worker's ``stats.as_dict``) on ``port`` at ``/metrics``."""
    registry = CollectorRegistry()
    registry.register(_WorkerCollector(kind, counters))
    start_http_server(port, registry=registry)
