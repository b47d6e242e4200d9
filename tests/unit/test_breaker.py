"""Circuit breakers: the spec's thresholds per provider, fail-fast, one probe, what counts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from server.errors import CircuitOpen
from server.providers import (
    ProviderAuthError,
    ProviderNetworkError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
)
from server.resilience import (
    BREAKER_CONFIGS,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    FakeClock,
    Transition,
)

# The spec's CIRCUIT_BREAKER_CONFIG, plus meta_graph (Lead Ads / pages), ours.
SPEC = {
    "meta_capi": (5, 60.0),
    "meta_audiences": (3, 120.0),
    "waha": (3, 30.0),
    "google_calendar": (3, 60.0),
    "gmail": (3, 60.0),
    "instagram": (3, 60.0),
    "smtp": (3, 30.0),
    "meta_graph": (5, 60.0),
}


def _outage(provider: str = "p") -> ProviderServerError:
    return ProviderServerError("HTTP 503", provider=provider, status_code=503)


def _fail(breaker: CircuitBreaker, times: int, exc: BaseException | None = None) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.allow(), exc or _outage(breaker.provider))


def test_config_table_is_the_spec() -> None:
    assert {
        name: (c.failure_threshold, c.reset_timeout_s) for name, c in BREAKER_CONFIGS.items()
    } == SPEC


@pytest.mark.parametrize(("provider", "threshold", "reset"), [(p, *v) for p, v in SPEC.items()])
def test_opens_at_threshold_and_fails_fast_until_reset(
    provider: str, threshold: int, reset: float
) -> None:
    clock = FakeClock()
    breaker = BreakerRegistry(clock).get(provider)

    _fail(breaker, threshold - 1)
    assert breaker.state is BreakerState.CLOSED
    breaker.allow()  # still lets calls through

    _fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as info:
        breaker.allow()
    assert info.value.retry_after == pytest.approx(reset)
    assert info.value.metadata == {"provider": provider}

    clock.advance(reset - 1)
    with pytest.raises(CircuitOpen) as info:
        breaker.allow()
    assert info.value.retry_after == pytest.approx(1.0)

    clock.advance(1)
    permit = breaker.allow()
    assert permit.probe
    assert breaker.state is BreakerState.HALF_OPEN


def test_circuit_open_is_an_unavailable_domain_error() -> None:
    breaker = BreakerRegistry(FakeClock()).get("waha")
    _fail(breaker, 3)
    with pytest.raises(CircuitOpen) as info:
        breaker.allow()
    assert info.value.grpc_code is grpc.StatusCode.UNAVAILABLE
    assert info.value.reason == "CIRCUIT_OPEN"
    assert info.value.retryable


async def test_exactly_one_probe_under_concurrency_then_closes() -> None:
    clock = FakeClock()
    registry = BreakerRegistry(clock)
    breaker = registry.get("waha")
    _fail(breaker, 3)
    clock.advance(30)

    gate = asyncio.Event()
    entered = 0

    async def call() -> str:
        nonlocal entered
        async with registry.guard("waha"):
            entered += 1
            await gate.wait()
        return "ok"

    tasks = [asyncio.create_task(call()) for _ in range(20)]
    await asyncio.sleep(0)  # everyone has asked by now; only the probe is waiting
    assert entered == 1
    finished = [t for t in tasks if t.done()]
    assert len(finished) == 19
    assert all(isinstance(t.exception(), CircuitOpen) for t in finished)
    assert breaker.state is BreakerState.HALF_OPEN

    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count("ok") == 1
    assert breaker.state is BreakerState.CLOSED
    assert not breaker.allow().probe  # closed again: calls flow


async def test_probe_failure_reopens_for_a_new_reset_timeout() -> None:
    clock = FakeClock()
    breaker = BreakerRegistry(clock).get("google_calendar")
    _fail(breaker, 3)
    clock.advance(60)

    with pytest.raises(ProviderTimeout):
        async with breaker.guard():
            raise ProviderTimeout("slow", provider="google_calendar")
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as info:
        breaker.allow()
    assert info.value.retry_after == pytest.approx(60.0)  # counted from the probe's failure
    clock.advance(60)
    assert breaker.allow().probe


@pytest.mark.parametrize(
    "answer",
    [
        ProviderRejected("HTTP 400", provider="waha", status_code=400),
        ProviderAuthError("HTTP 401", provider="waha", status_code=401),
        ProviderRateLimited("HTTP 429", provider="waha", status_code=429, retry_after=5),
    ],
    ids=["rejected", "invalid-token", "rate-limited"],
)
def test_provider_answers_are_not_outages(answer: Exception) -> None:
    breaker = BreakerRegistry(FakeClock()).get("waha")
    _fail(breaker, 10, answer)
    assert breaker.state is BreakerState.CLOSED

    # ...and they break a run of outages: the provider is evidently up.
    _fail(breaker, 2)
    _fail(breaker, 1, answer)
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    _fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN


def test_network_errors_and_timeouts_count() -> None:
    breaker = BreakerRegistry(FakeClock()).get("smtp")
    breaker.record_failure(breaker.allow(), ProviderNetworkError("reset", provider="smtp"))
    breaker.record_failure(breaker.allow(), TimeoutError())
    breaker.record_failure(breaker.allow(), ProviderTimeout("slow", provider="smtp"))
    assert breaker.state is BreakerState.OPEN


def test_success_resets_the_consecutive_count() -> None:
    breaker = BreakerRegistry(FakeClock()).get("waha")
    _fail(breaker, 2)
    breaker.record_success(breaker.allow())
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED


def test_results_of_calls_started_before_opening_are_ignored() -> None:
    clock = FakeClock()
    breaker = BreakerRegistry(clock).get("waha")
    slow_ones = [breaker.allow() for _ in range(3)]  # in flight when the circuit opens
    _fail(breaker, 3)
    assert breaker.state is BreakerState.OPEN

    breaker.record_success(slow_ones[0])
    assert breaker.state is BreakerState.OPEN  # a stale success does not close it
    breaker.record_failure(slow_ones[1], _outage())
    with pytest.raises(CircuitOpen) as info:
        breaker.allow()
    assert info.value.retry_after == pytest.approx(30.0)  # nor does a stale failure extend it


async def test_our_own_bugs_and_cancellation_say_nothing_about_the_provider() -> None:
    clock = FakeClock()
    breaker = BreakerRegistry(clock).get("waha")
    for _ in range(5):
        with pytest.raises(KeyError):
            async with breaker.guard():
                raise KeyError("bug in our code")
    assert breaker.state is BreakerState.CLOSED

    _fail(breaker, 3)
    clock.advance(30)
    with pytest.raises(KeyError):
        async with breaker.guard():  # the probe hits a bug: no verdict, probe handed back
            raise KeyError("bug")
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow().probe  # the next caller may probe at once


async def test_cancelled_probe_is_handed_back() -> None:
    clock = FakeClock()
    breaker = BreakerRegistry(clock).get("waha")
    _fail(breaker, 3)
    clock.advance(30)

    async def probe() -> None:
        async with breaker.guard():
            await asyncio.Event().wait()

    task = asyncio.create_task(probe())
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpen):
        breaker.allow()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.allow().probe


def test_a_lost_probe_does_not_stick_the_circuit() -> None:
    clock = FakeClock()
    breaker = BreakerRegistry(clock).get("waha")
    _fail(breaker, 3)
    clock.advance(30)
    breaker.allow()  # a probe whose caller never reports back
    with pytest.raises(CircuitOpen) as info:
        breaker.allow()
    assert info.value.retry_after == pytest.approx(breaker.config.probe_busy_retry_after_s)
    clock.advance(30)
    assert breaker.allow().probe


async def test_on_transition_hook_sees_every_change() -> None:
    clock = FakeClock()
    seen: list[Transition] = []

    async def hook(t: Transition) -> None:
        seen.append(t)

    registry = BreakerRegistry(clock, on_transition=hook)
    breaker = registry.get("meta_audiences")
    _fail(breaker, 3)
    clock.advance(120)
    breaker.record_success(breaker.allow())
    await registry.drain()

    assert [(t.old, t.new) for t in seen] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    opened = seen[0]
    assert (opened.provider, opened.failures, opened.cause) == (
        "meta_audiences",
        3,
        "ProviderServerError",
    )
    assert opened.at == clock.now() - timedelta(seconds=120)


async def test_a_failing_hook_does_not_break_calls(caplog: pytest.LogCaptureFixture) -> None:
    async def hook(t: Transition) -> None:
        raise RuntimeError("mail server down")

    registry = BreakerRegistry(FakeClock(), on_transition=hook)
    _fail(registry.get("smtp"), 3)
    await registry.drain()
    assert registry.get("smtp").state is BreakerState.OPEN
    assert "on_transition hook failed" in caplog.text


def test_snapshot_lists_every_provider() -> None:
    clock = FakeClock()
    registry = BreakerRegistry(clock)
    _fail(registry.get("meta_capi"), 5)
    snaps = {s.provider: s for s in registry.snapshot()}

    assert set(snaps) == set(SPEC)
    capi = snaps["meta_capi"]
    assert capi.state is BreakerState.OPEN
    assert capi.failures == 5
    assert capi.opened_at == clock.now()
    assert capi.next_probe_at is not None and capi.opened_at is not None
    assert (capi.next_probe_at - capi.opened_at).total_seconds() == 60
    waha = snaps["waha"]
    assert (waha.state, waha.failures, waha.opened_at, waha.next_probe_at) == (
        BreakerState.CLOSED,
        0,
        None,
        None,
    )


def test_unknown_provider_is_an_error() -> None:
    with pytest.raises(KeyError):
        BreakerRegistry(FakeClock()).get("wahaa")
