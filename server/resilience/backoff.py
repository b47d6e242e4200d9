"""How long to wait before the next attempt (the spec's `calculateRetryDelay`, plus Retry-After)."""

from __future__ import annotations

from typing import Protocol

from server.resilience.policies import RetryPolicy, Strategy


class RandomSource(Protocol):
    """What backoff needs from `random.Random`: a float in [0, 1). Injected for determinism."""

    def random(self) -> float: ...


def base_delay(policy: RetryPolicy, attempt: int) -> float:
    """Delay after failed attempt `attempt` (1-based), capped, before jitter.

    Exponential: base * 2^(attempt-1); linear: base * attempt; both capped at `max_delay_s`.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    if policy.strategy is Strategy.EXPONENTIAL:
        # Bound the exponent so a huge attempt number cannot overflow the float.
        raw = policy.base_delay_s * 2.0 ** min(attempt - 1, 62)
    else:
        raw = policy.base_delay_s * attempt
    return min(raw, policy.max_delay_s)


def next_delay(
    policy: RetryPolicy,
    attempt: int,
    rng: RandomSource,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait after failed attempt `attempt` before the next one.

    As the spec: cap first, then add 0-`jitter` of the capped delay, so the longest computed
    wait is `max_delay_s * (1 + jitter)` (60 s -> 78 s). A provider's Retry-After is a floor:
    the wait is never shorter than it says. It is cut at `policy.max_retry_after_s`, and jitter
    applies on top of it too, so clients told "come back in 30 s" do not all return at once.
    """
    delay = base_delay(policy, attempt)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, policy.max_retry_after_s))
    return delay + rng.random() * policy.jitter * delay


def delay_bounds(
    policy: RetryPolicy, attempt: int, retry_after: float | None = None
) -> tuple[float, float]:
    """(shortest, longest) wait `next_delay` can return: jitter 0 and jitter at its maximum."""
    low = next_delay(policy, attempt, _Fixed(0.0), retry_after)
    high = next_delay(policy, attempt, _Fixed(1.0), retry_after)
    return low, high


class _Fixed:
    def __init__(self, value: float) -> None:
        self._value = value

    def random(self) -> float:
        return self._value
