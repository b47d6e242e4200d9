"""The gRPC server metrics kept as plain counters come out as the standard Prometheus families:
cumulative `le` buckets (a value on a bound falls in that bucket), count, sum, codes apart."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.observability.call_metrics import GrpcServerMetrics


def _samples(collector: GrpcServerMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_calls_become_started_handled_and_a_cumulative_histogram() -> None:
    collector = GrpcServerMetrics((0.01, 0.1, 1.0))
    stats = collector.method("renove.conexoes.v1.WhatsAppService", "GetWhatsAppStatus", "unary")
    for seconds, code in ((0.004, "OK"), (0.01, "OK"), (0.5, "INVALID_ARGUMENT"), (3.0, "OK")):
        stats.started += 1
        stats.finish(code, seconds)
    stats.started += 1  # one still running

    method = {
        ("grpc_service", "renove.conexoes.v1.WhatsAppService"),
        ("grpc_method", "GetWhatsAppStatus"),
        ("grpc_type", "unary"),
    }
    got = _samples(collector)

    def value(name: str, **labels: str) -> float:
        return got[(name, frozenset(method | set(labels.items())))]

    assert value("grpc_server_started_total") == 5
    assert value("grpc_server_handled_total", grpc_code="OK") == 3
    assert value("grpc_server_handled_total", grpc_code="INVALID_ARGUMENT") == 1
    buckets = [value("grpc_server_handling_seconds_bucket", le=le) for le in
               ("0.01", "0.1", "1.0", "+Inf")]  # fmt: skip
    assert buckets == [2, 2, 3, 4]
    assert value("grpc_server_handling_seconds_count") == 4
    assert abs(value("grpc_server_handling_seconds_sum") - 3.514) < 1e-9


def test_nothing_is_exported_before_the_first_call() -> None:
    assert not [name for name, _ in _samples(GrpcServerMetrics((1.0,)))]
