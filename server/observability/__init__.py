"""Operators' view of the service: Prometheus metrics, structured logs, traces.

Modules: `metrics` (every collector), `call_metrics` (the gRPC server metrics as plain
counters), `context` (request id and call facts), `logs` (JSON/text formatting),
`interceptor` (gRPC), `jobs` (worker attempts), `gauges` (sampled from the database),
`breakers`, `tracing` (OpenTelemetry, off unless configured), `listener` (the /metrics port),
`process` (what serve and worker start). Import the module you need.
"""
