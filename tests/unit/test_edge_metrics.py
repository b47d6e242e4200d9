"""The sidecar's HTTP metrics kept as plain counters come out as the standard families:
requests by route, method and status; duration by route and method; body sizes by route
(summed over its methods)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from webhooks_http.edge_metrics import EdgeMetrics

ROUTE = "/webhooks/waha/{tenant_id}"


def test_requests_become_counts_and_histograms() -> None:
    edge = EdgeMetrics()
    edge.route(ROUTE, "POST").record(200, 0.004, 900, 11)
    edge.route(ROUTE, "POST").record(503, 2.0, 1_500, 0)
    edge.route(ROUTE, "GET").record(200, 0.001, 0, 40)
    registry = CollectorRegistry()
    registry.register(edge)
    got = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return got[(name, frozenset({("route", ROUTE), *labels.items()}))]

    assert value("http_requests_total", method="POST", status="200") == 1
    assert value("http_requests_total", method="POST", status="503") == 1
    assert value("http_request_duration_seconds_bucket", method="POST", le="0.005") == 1
    assert value("http_request_duration_seconds_bucket", method="POST", le="+Inf") == 2
    assert value("http_request_duration_seconds_count", method="GET") == 1
    assert value("http_request_body_bytes_bucket", le="1000.0") == 2
    assert value("http_request_body_bytes_count") == 3
    assert value("http_request_body_bytes_sum") == 2_400
    assert value("http_response_body_bytes_sum") == 51
