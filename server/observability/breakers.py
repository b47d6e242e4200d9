"""Breaker transitions as metrics: a wrapper around the registry's transition hook.

The state gauge itself is sampled from the database (gauges.py): breakers live in each
process, and one that opened in a worker must read open on every replica's scrape.
"""

from __future__ import annotations

from server.observability import metrics
from server.resilience.breaker import BREAKER_CONFIGS, Transition, TransitionHook


def observing_breakers(inner: TransitionHook | None) -> TransitionHook:
    """The hook to give BreakerRegistry: counts the transition, then runs `inner` (which
    stores it in `circuit_breakers`).

    Every configured breaker starts at 0 (closed), so a dashboard shows it before its first
    transition is stored and sampled.
    """
    for name in BREAKER_CONFIGS:
        metrics.BREAKER_STATE.labels(name).set(0)

    async def hook(transition: Transition) -> None:
        metrics.BREAKER_TRANSITIONS.labels(transition.provider, transition.new.value).inc()
        if inner is not None:
            await inner(transition)

    return hook
