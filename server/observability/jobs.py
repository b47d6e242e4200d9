"""A job attempt seen from outside: its log context, span, metrics and one log line.

The worker runs each attempt inside `attempt_scope(job)`, which binds the request id that
enqueued the job (so the job's log lines share the webhook's or RPC's id), continues its trace,
and `record(outcome)` counts and logs how the attempt ended.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from server.observability import metrics, tracing
from server.observability.context import CallInfo, bound, new_request_id

_log = logging.getLogger("conexoes.jobs")
# Completed attempts are DEBUG (CONEXOES_ACCESS_LOG=all shows them); what went wrong is not.
_LEVELS = {"completed": logging.DEBUG, "dead_letter": logging.WARNING}


@dataclass
class AttemptScope:
    operation: str
    created_at: dt.datetime | None
    started: float = field(default_factory=time.perf_counter)

    def record(self, outcome: str, *, attempt: int | None = None) -> None:
        """outcome: completed, retry, dead_letter, postponed or released."""
        elapsed = time.perf_counter() - self.started
        metrics.JOB_ATTEMPTS.labels(self.operation, outcome).inc()
        if outcome in ("completed", "retry", "dead_letter"):
            metrics.JOB_ATTEMPT_SECONDS.labels(self.operation).observe(elapsed)
        if outcome == "dead_letter":
            metrics.DEAD_LETTERS.labels(self.operation).inc()
        if outcome == "completed" and self.created_at is not None:
            waited = (dt.datetime.now(dt.UTC) - self.created_at).total_seconds()
            metrics.JOB_LATENCY.labels(self.operation).observe(max(0.0, waited))
        level = _LEVELS.get(outcome, logging.INFO)
        if not _log.isEnabledFor(level):
            return
        _log.log(
            level,
            "job %s %s",
            self.operation,
            outcome,
            extra={
                "outcome": outcome,
                "duration_ms": round(elapsed * 1000, 2),
                **({"attempt": attempt} if attempt is not None else {}),
            },
        )


@contextmanager
def attempt_scope(
    *,
    operation: str,
    tenant_id: uuid.UUID,
    request_id: str | None,
    traceparent: str | None,
    created_at: dt.datetime | None,
) -> Iterator[AttemptScope]:
    info = CallInfo(request_id or new_request_id(), operation=operation, tenant=str(tenant_id))
    with bound(info), tracing.job_span(operation, traceparent):
        yield AttemptScope(operation, created_at)


def enqueue_context() -> dict[str, str | None]:
    """The columns a job takes from the call that enqueues it."""
    from server.observability.context import current_request_id

    return {
        "request_id": current_request_id(),
        "traceparent": tracing.inject().get("traceparent"),
    }
