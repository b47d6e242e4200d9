"""The standard gRPC server metrics (started, handled by code, handling-time histogram) as
plain counters per method, turned into Prometheus families only when scraped.

prometheus-client's labelled children take a lock and a few calls per update; three updates
per RPC were a measurable part of the interceptor's cost (`make bench` row 11). Here a call
costs an integer increment, a dictionary update and a bisect. The counters are only changed
from the event loop's thread; a scrape (the listener's thread) copies each list or dict in one
step, so it may see a call counted in `handled` and not yet in the histogram, never a torn
value.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

_LABELS = ["grpc_service", "grpc_method", "grpc_type"]


class MethodStats:
    """One method's counts: `started += 1` when a call begins, `finish(code, seconds)` when
    it ends."""

    __slots__ = ("_bounds", "buckets", "handled", "labels", "started", "sum")

    def __init__(self, labels: tuple[str, str, str], bounds: tuple[float, ...]) -> None:
        self.labels = labels
        self._bounds = bounds
        self.started = 0
        self.handled: dict[str, int] = {}
        self.buckets = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def finish(self, code: str, seconds: float) -> None:
        handled = self.handled
        handled[code] = handled.get(code, 0) + 1
        self.buckets[bisect_left(self._bounds, seconds)] += 1
        self.sum += seconds


class GrpcServerMetrics:
    """A Prometheus collector over every method's `MethodStats`."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._methods: dict[tuple[str, str, str], MethodStats] = {}

    def method(self, service: str, name: str, kind: str) -> MethodStats:
        labels = (service, name, kind)
        found = self._methods.get(labels)
        if found is None:
            found = self._methods[labels] = MethodStats(labels, self._bounds)
        return found

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        started, handled, latency = self._families()
        for stats in list(self._methods.values()):
            labels = list(stats.labels)
            started.add_metric(labels, stats.started)
            for code, count in list(stats.handled.items()):
                handled.add_metric([*labels, code], count)
            counts, total, cumulative = list(stats.buckets), stats.sum, 0
            buckets = []
            for bound, count in zip((*self._bounds, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            latency.add_metric(labels, buckets, total)
        yield from (started, handled, latency)

    def _families(self) -> tuple[CounterMetricFamily, CounterMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily(
                "grpc_server_started", "RPCs started on the server.", labels=_LABELS
            ),
            CounterMetricFamily(
                "grpc_server_handled",
                "RPCs completed on the server, by status code.",
                labels=[*_LABELS, "grpc_code"],
            ),
            HistogramMetricFamily(
                "grpc_server_handling_seconds",
                "Time from the start of an RPC to its status (streams: their whole life).",
                labels=_LABELS,
            ),
        )


def _le(bound: float) -> str:
    return floatToGoString(bound)  # as prometheus-client's own Histogram writes `le`


def register(bounds: tuple[float, ...]) -> GrpcServerMetrics:
    collector = GrpcServerMetrics(bounds)
    REGISTRY.register(collector)
    return collector
