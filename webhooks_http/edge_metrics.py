"""The sidecar's HTTP metrics as plain counters per (route, method), turned into Prometheus
families only when scraped: requests by status, the duration histogram, body size histograms.

prometheus-client's labelled children take a lock and a few calls per update; four updates per
request were most of the edge middleware's cost (`make bench` row 11). Here a request costs a
dictionary update and three bisects. Counters change only on the event loop's thread; a scrape
copies each list or dict in one step, so it may see a request in `http_requests_total` and not
yet in a histogram, never a torn value.
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

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SIZE_BUCKETS = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)


class _Histogram:
    __slots__ = ("bounds", "buckets", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def merged(self, other: _Histogram) -> _Histogram:
        total = _Histogram(self.bounds)
        total.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        total.sum = self.sum + other.sum
        return total

    def samples(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative `le` buckets and the sum, as HistogramMetricFamily.add_metric takes them."""
        counts, total = list(self.buckets), self.sum
        out: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            cumulative += count
            out.append((floatToGoString(bound), cumulative))
        return out, total


class RouteStats:
    """One (route, method): `record(status, seconds, request_bytes, response_bytes)`."""

    __slots__ = ("duration", "method", "request_bytes", "response_bytes", "route", "statuses")

    def __init__(self, route: str, method: str) -> None:
        self.route = route
        self.method = method
        self.statuses: dict[int, int] = {}
        self.duration = _Histogram(DURATION_BUCKETS)
        self.request_bytes = _Histogram(SIZE_BUCKETS)
        self.response_bytes = _Histogram(SIZE_BUCKETS)

    def record(self, status: int, seconds: float, received: int, sent: int) -> None:
        statuses = self.statuses
        statuses[status] = statuses.get(status, 0) + 1
        self.duration.observe(seconds)
        self.request_bytes.observe(received)
        self.response_bytes.observe(sent)


class EdgeMetrics:
    """A Prometheus collector over every (route, method)'s `RouteStats`."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], RouteStats] = {}

    def route(self, route: str, method: str) -> RouteStats:
        found = self._routes.get((route, method))
        if found is None:
            found = self._routes[(route, method)] = RouteStats(route, method)
        return found

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        requests, duration, request_bytes, response_bytes = self._families()
        sizes: dict[str, tuple[_Histogram, _Histogram]] = {}
        for stats in list(self._routes.values()):
            for status, count in list(stats.statuses.items()):
                requests.add_metric([stats.route, stats.method, str(status)], count)
            duration.add_metric([stats.route, stats.method], *stats.duration.samples())
            seen = sizes.get(stats.route)
            sizes[stats.route] = (
                (stats.request_bytes, stats.response_bytes)
                if seen is None
                else (seen[0].merged(stats.request_bytes), seen[1].merged(stats.response_bytes))
            )
        for route, (received, sent) in sizes.items():
            request_bytes.add_metric([route], *received.samples())
            response_bytes.add_metric([route], *sent.samples())
        yield from (requests, duration, request_bytes, response_bytes)

    @staticmethod
    def _families() -> tuple[
        CounterMetricFamily, HistogramMetricFamily, HistogramMetricFamily, HistogramMetricFamily
    ]:
        return (
            CounterMetricFamily(
                "http_requests",
                "HTTP requests by route template, method and status.",
                labels=["route", "method", "status"],
            ),
            HistogramMetricFamily(
                "http_request_duration_seconds",
                "Time to the end of the HTTP response (SSE streams: their whole life).",
                labels=["route", "method"],
            ),
            HistogramMetricFamily(
                "http_request_body_bytes", "Request body sizes.", labels=["route"]
            ),
            HistogramMetricFamily(
                "http_response_body_bytes", "Response body sizes.", labels=["route"]
            ),
        )


def register() -> EdgeMetrics:
    collector = EdgeMetrics()
    REGISTRY.register(collector)
    return collector
