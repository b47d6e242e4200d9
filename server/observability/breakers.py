"""Breaker state and transitions as metrics: a wrapper around the registry's transition hook."""

from __future__ import annotations

from server.observability import metrics
from server.resilience.breaker import (
    BREAKER_CONFIGS,
    BreakerState,
    Transition,
    TransitionHook,
)

_LEVEL = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def observing_breakers(inner: TransitionHook | None) -> TransitionHook:
    """The hook to give BreakerRegistry: records the transition, then runs `inner`.

    Every configured breaker starts at 0 (closed), so a dashboard shows it before its first
    transition.
    """
    for name in BREAKER_CONFIGS:
        metrics.BREAKER_STATE.labels(name).set(0)

    async def hook(transition: Transition) -> None:
        metrics.BREAKER_STATE.labels(transition.provider).set(_LEVEL[transition.new])
        metrics.BREAKER_TRANSITIONS.labels(transition.provider, transition.new.value).inc()
        if inner is not None:
            await inner(transition)

    return hook
