"""Every Prometheus collector of the server and worker, created once at import.

Labels are bounded sets only (method, code, provider, operation, type, status, breaker):
never a tenant, user or connection id. Names follow Prometheus conventions: the standard gRPC
server metrics (`grpc_server_*`, as go-grpc-prometheus names them) and `conexoes_*` for the
domain. docs/operations.md says what each one means.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from server.observability import call_metrics

# Seconds: from sub-millisecond reads to the slowest provider timeouts.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# grpc_server_started_total, grpc_server_handled_total, grpc_server_handling_seconds:
# plain counters per method, made into families at scrape time (call_metrics.py).
GRPC = call_metrics.register(LATENCY_BUCKETS)
STREAMS_OPEN = Gauge(
    "conexoes_streams_open",
    "Server-streaming RPCs open now (status and change-feed streams).",
    ["grpc_method"],
)
WEBHOOKS = Counter(
    "conexoes_webhooks_total",
    "Provider webhook deliveries judged by the server, by outcome "
    "(accepted, duplicate, unauthenticated, malformed, unknown_recipient, verified, ...).",
    ["provider", "outcome"],
)
JOB_ATTEMPTS = Counter(
    "conexoes_job_attempts_total",
    "Job attempts by outcome: completed, retry, dead_letter, postponed (circuit open), released.",
    ["operation", "outcome"],
)
JOB_ATTEMPT_SECONDS = Histogram(
    "conexoes_job_attempt_seconds",
    "Time one attempt of a job's handler took.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
JOB_LATENCY = Histogram(
    "conexoes_job_latency_seconds",
    "Time from enqueue to a job's completion (retries included).",
    ["operation"],
    buckets=(*LATENCY_BUCKETS, 120, 300, 900, 3600),
)
DEAD_LETTERS = Counter(
    "conexoes_dead_letters_total", "Jobs dead-lettered (status failed).", ["operation"]
)
BREAKER_STATE = Gauge(
    "conexoes_breaker_state",
    "Circuit breaker state as stored in circuit_breakers (the last transition any process "
    "recorded): 0 closed, 1 half-open, 2 open.",
    ["breaker"],
)
BREAKER_TRANSITIONS = Counter(
    "conexoes_breaker_transitions_total",
    "Circuit breaker state changes made by this process.",
    ["breaker", "to"],
)
TOKEN_REFRESHES = Counter(
    "conexoes_token_refreshes_total",
    "OAuth token refresh attempts by connection type and outcome (success, failure).",
    ["type", "outcome"],
)
# Sampled from the database every few seconds (gauges.py).
QUEUE_DEPTH = Gauge(
    "conexoes_queue_jobs", "Jobs in eventos_pendentes by operation and status.",
    ["operation", "status"],
)  # fmt: skip
QUEUE_OLDEST_AGE = Gauge(
    "conexoes_queue_oldest_due_seconds",
    "Age of the oldest due pending job of each operation (0: none waiting).",
    ["operation"],
)
INBOX_DEPTH = Gauge(
    "conexoes_inbox_unprocessed", "Accepted webhook events not processed yet.", ["provider"]
)
INBOX_OLDEST_AGE = Gauge(
    "conexoes_inbox_oldest_unprocessed_seconds",
    "Age of the oldest accepted, unprocessed webhook event.",
    ["provider"],
)
CONNECTIONS = Gauge(
    "conexoes_connections", "Connections by type and current status.", ["type", "status"]
)
TOKENS_EXPIRING = Gauge(
    "conexoes_tokens_expiring_7d",
    "Active connections whose token expires within 7 days.",
    ["type"],
)
OUTBOX_LAG = Gauge(
    "conexoes_outbox_lag_seconds",
    "Age of the oldest outbound webhook delivery not done yet (0: none waiting).",
)
SAMPLE_ERRORS = Counter(
    "conexoes_gauge_samples_failed_total", "Database gauge samples that failed."
)
