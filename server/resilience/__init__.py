"""Retries, backoff, circuit breakers and time: how a failed provider call is handled."""

from __future__ import annotations

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
from server.resilience.policies import POLICIES, RetryPolicy, Strategy, policy_for
from server.resilience.retry import run_with_retry

__all__ = [
    "BREAKER_CONFIGS",
    "POLICIES",
    "BreakerConfig",
    "BreakerRegistry",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "Clock",
    "FakeClock",
    "Permit",
    "RandomSource",
    "RetryPolicy",
    "Strategy",
    "SystemClock",
    "Transition",
    "TransitionHook",
    "base_delay",
    "delay_bounds",
    "is_outage",
    "is_provider_answer",
    "is_retryable",
    "next_delay",
    "policy_for",
    "retry_after_of",
    "run_with_retry",
]
