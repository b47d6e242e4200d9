"""Retries, backoff, circuit breakers, time, the job queue, its workers, the scheduler and alerts:
how a failed provider call is handled."""

from __future__ import annotations

from server.resilience.alerts import (
    BreakerAlerts,
    connection_broken,
    connection_recovered,
    raise_alert,
    resolve_alerts,
)
from server.resilience.backoff import RandomSource, base_delay, delay_bounds, next_delay
from server.resilience.breaker import (
    BREAKER_CONFIGS,
    BreakerConfig,
    BreakerRegistry,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    Permit,
    Transition,
    TransitionHook,
)
from server.resilience.classify import is_outage, is_provider_answer, is_retryable, retry_after_of
from server.resilience.clock import Clock, FakeClock, SystemClock
from server.resilience.jobs import Job, JobHandler, JobRegistry, enqueue
from server.resilience.operations import OPERATIONS, Operation
from server.resilience.policies import POLICIES, RetryPolicy, Strategy, policy_for
from server.resilience.scheduler import Scheduler
from server.resilience.worker import Worker

__all__ = [
    "BREAKER_CONFIGS",
    "OPERATIONS",
    "POLICIES",
    "BreakerAlerts",
    "BreakerConfig",
    "BreakerRegistry",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "Clock",
    "FakeClock",
    "Job",
    "JobHandler",
    "JobRegistry",
    "Operation",
    "Permit",
    "RandomSource",
    "RetryPolicy",
    "Scheduler",
    "Strategy",
    "SystemClock",
    "Transition",
    "TransitionHook",
    "Worker",
    "base_delay",
    "connection_broken",
    "connection_recovered",
    "delay_bounds",
    "enqueue",
    "is_outage",
    "is_provider_answer",
    "is_retryable",
    "next_delay",
    "policy_for",
    "raise_alert",
    "resolve_alerts",
    "retry_after_of",
]
