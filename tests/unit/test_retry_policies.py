"""The spec's retry table, backoff with jitter, tenant overrides, and how real HTTP failures
are classified (retryable or final, Retry-After) for the worker's retry decisions."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sandbox.faults import FaultServer, Reply, run_fault_server
from server.errors import CircuitOpen
from server.providers import (
    ProviderAuthError,
    ProviderError,
    ProviderNetworkError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    raise_for_provider_response,
    translate_errors,
)
from server.resilience import (
    POLICIES,
    BreakerRegistry,
    BreakerState,
    FakeClock,
    RetryPolicy,
    Strategy,
    delay_bounds,
    is_retryable,
    next_delay,
    policy_for,
    retry_after_of,
)

EXP, LIN = Strategy.EXPONENTIAL, Strategy.LINEAR

# The spec's table, and the waits it implies (jitter 0) between its attempts.
# max_retries is the total number of attempts (the spec's withRetry loop), so N attempts
# have N-1 waits: after failed attempt n, base*2^(n-1) (exponential) or base*n (linear).
SPEC = {
    "oauth_refresh": (3, 1.0, EXP, 10.0, [1, 2]),
    "capi_event": (5, 2.0, EXP, 30.0, [2, 4, 8, 16]),
    "audience_sync": (3, 5.0, EXP, 60.0, [5, 10]),
    "lead_processing": (3, 1.0, LIN, 10.0, [1, 2]),
    "whatsapp_send": (3, 2.0, EXP, 15.0, [2, 4]),
    "instagram_send": (3, 2.0, EXP, 15.0, [2, 4]),
    "calendar_create": (3, 1.0, EXP, 10.0, [1, 2]),
    "email_send": (3, 3.0, EXP, 30.0, [3, 6]),
    "outbound_webhook": (5, 5.0, EXP, 30.0, [5, 10, 20, 40]),
}
# Ours, not the spec's: other inbound provider events take the spec's inbound-webhook row.
EXTRA = {"inbound_event": (3, 1.0, LIN, 10.0, [1, 2])}


class Fixed:
    """An rng that always returns the same number: jitter at its minimum or maximum."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


NO_JITTER, MAX_JITTER = Fixed(0.0), Fixed(1.0)


def _always(
    exc_factory: Callable[[], BaseException],
) -> tuple[Callable[[], Awaitable[Any]], list[int]]:
    calls: list[int] = []

    async def fn() -> Any:
        calls.append(1)
        raise exc_factory()

    return fn, calls


def _outage() -> ProviderServerError:
    return ProviderServerError("HTTP 503", provider="p", status_code=503)


# --- the table ------------------------------------------------------------------------


def test_table_is_the_spec() -> None:
    assert {
        op: (p.max_retries, p.base_delay_s, p.strategy, p.timeout_s) for op, p in POLICIES.items()
    } == {op: row[:4] for op, row in {**SPEC, **EXTRA}.items()}
    for op, policy in POLICIES.items():
        assert policy.operation == op
        assert (policy.max_delay_s, policy.jitter) == (60.0, 0.30)
        assert policy.max_attempts == policy.max_retries


@pytest.mark.parametrize("operation", list(SPEC))
def test_each_policy_waits_its_backoff_between_its_attempts(operation: str) -> None:
    retries, _base, _strategy, _timeout, waits = SPEC[operation]
    policy = POLICIES[operation]
    assert policy.max_attempts == retries == len(waits) + 1
    for rng, factor in ((NO_JITTER, 1.0), (MAX_JITTER, 1.3)):
        computed = [next_delay(policy, n, rng) for n in range(1, retries)]
        assert computed == pytest.approx([w * factor for w in waits])
    # With real randomness every wait stays within [base, base * 1.3].
    rng = random.Random(8)
    for n, wait in enumerate(waits, start=1):
        low, high = delay_bounds(policy, n)
        assert (low, high) == pytest.approx((wait, wait * 1.3))
        assert low <= next_delay(policy, n, rng) <= high


def test_linear_grows_by_base_exponential_doubles() -> None:
    linear, exponential = POLICIES["lead_processing"], POLICIES["calendar_create"]
    assert [next_delay(linear, n, NO_JITTER) for n in range(1, 6)] == [1, 2, 3, 4, 5]
    assert [next_delay(exponential, n, NO_JITTER) for n in range(1, 6)] == [1, 2, 4, 8, 16]


def test_backoff_is_capped_at_60s_before_jitter() -> None:
    policy = POLICIES["outbound_webhook"]  # 5, 10, 20, 40, 80 -> 60
    assert next_delay(policy, 5, NO_JITTER) == 60.0
    assert next_delay(policy, 5, MAX_JITTER) == pytest.approx(78.0)
    assert next_delay(policy, 500, NO_JITTER) == 60.0  # no overflow on absurd attempt numbers
    slow_linear = replace(POLICIES["lead_processing"], base_delay_s=25.0)
    assert next_delay(slow_linear, 3, NO_JITTER) == 60.0


def test_retry_after_is_a_floor_never_a_ceiling() -> None:
    policy = POLICIES["capi_event"]
    assert next_delay(policy, 1, NO_JITTER, retry_after=30) == 30.0
    assert next_delay(policy, 1, MAX_JITTER, retry_after=30) == pytest.approx(39.0)
    # the backoff is longer than what the provider asked: backoff wins
    assert next_delay(policy, 4, NO_JITTER, retry_after=3) == 16.0
    # Retry-After may exceed the 60 s backoff cap (Google quota: hours), up to an hour
    assert next_delay(policy, 1, NO_JITTER, retry_after=1800) == 1800.0
    assert next_delay(policy, 1, NO_JITTER, retry_after=10**7) == 3600.0
    assert next_delay(policy, 1, NO_JITTER, retry_after=0) == 2.0


# --- tenant overrides (configuracoes_extra.retry_config) ------------------------------


def test_no_config_means_the_table() -> None:
    for op in POLICIES:
        assert policy_for(op, None) is POLICIES[op]
        assert policy_for(op, {}) is POLICIES[op]


@pytest.mark.parametrize(
    ("config", "capi", "webhook"),
    [
        ({"capi_max_retries": 7}, 7, 5),
        ({"webhook_max_retries": 3}, 5, 3),
        ({"capi_max_retries": 2, "webhook_max_retries": 8}, 2, 8),
        ({"capi_max_retries": 0}, 1, 5),  # at least the first attempt
        ({"capi_max_retries": -3}, 1, 5),
        ({"capi_max_retries": 1000}, 10, 5),  # bounded
        ({"capi_max_retries": "7"}, 5, 5),  # wrong type: default stands
        ({"capi_max_retries": True}, 5, 5),
        ({"capi_max_retries": 3.5}, 5, 5),
        ({"desativar_retry_capi": True}, 1, 5),
        ({"desativar_retry_capi": True, "capi_max_retries": 7}, 1, 5),
        ({"desativar_retry_capi": False, "capi_max_retries": 4}, 4, 5),
        ({"desativar_retry_capi": "yes"}, 5, 5),
        ({"capi_max_retries": 5, "webhook_max_retries": 3, "desativar_retry_capi": False}, 5, 3),
    ],
)
def test_tenant_overrides(config: dict[str, Any], capi: int, webhook: int) -> None:
    assert policy_for("capi_event", config).max_retries == capi
    assert policy_for("outbound_webhook", config).max_retries == webhook
    for op in set(POLICIES) - {"capi_event", "outbound_webhook"}:
        assert policy_for(op, config) == POLICIES[op]
    # only the count changes, never the delays or timeout
    assert replace(policy_for("capi_event", config), max_retries=5) == POLICIES["capi_event"]


def test_disabled_capi_retry_means_one_attempt() -> None:
    assert policy_for("capi_event", {"desativar_retry_capi": True}).max_attempts == 1


def test_unknown_operation_is_an_error() -> None:
    with pytest.raises(KeyError):
        policy_for("capi", None)


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy("x", 0, 1.0, EXP, 10.0)
    with pytest.raises(ValueError):
        RetryPolicy("x", 3, 1.0, EXP, 0.0)


# --- the clock ------------------------------------------------------------------------


async def test_fake_clock_wakes_sleepers_in_order_only_when_advanced() -> None:
    clock = FakeClock(datetime(2025, 3, 1, tzinfo=UTC))
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper("b", 5)), asyncio.create_task(sleeper("a", 2))]
    await asyncio.sleep(0)
    assert clock.sleeping == 2
    clock.advance(1.9)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(0.1)
    await asyncio.sleep(0)
    assert woke == ["a"]
    clock.advance(10)
    await asyncio.gather(*tasks)
    assert woke == ["a", "b"]
    assert clock.monotonic() == 12.0
    assert clock.now() == datetime(2025, 3, 1, 0, 0, 12, tzinfo=UTC)


# --- real HTTP failures, classified once for the worker ----------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def faults() -> AsyncIterator[FaultServer]:
    async with run_fault_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> None:
    if "faults" in request.fixturenames:
        request.getfixturevalue("faults").reset()


def _sender(
    server: FaultServer, path: str = "/api/sendText", timeout: float = 10.0
) -> Callable[[], Awaitable[Any]]:
    """One WhatsApp send as a provider client would make it. The default timeout is generous:
    on a loaded machine a scripted error can take longer than a short one to arrive and would be
    misread as a timeout; only the timeout test passes a short one."""

    async def send() -> Any:
        client = httpx.AsyncClient(base_url=server.url, timeout=timeout)
        async with client, translate_errors("waha"):
            response = await client.post(path, json={"chatId": "5511@c.us", "text": "oi"})
            return raise_for_provider_response("waha", response).json()

    return send


async def _failure(send: Callable[[], Awaitable[Any]]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await send()
    return info.value


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply.error(500), ProviderServerError),
        (Reply.error(503), ProviderServerError),
        (Reply.connection_reset(), ProviderNetworkError),
        (Reply.slow(0.5), ProviderTimeout),
    ],
    ids=["500", "503", "reset", "slow"],
)
async def test_outages_are_retryable(faults: FaultServer, reply: Reply, error: type) -> None:
    faults.script([reply], path="/api/sendText")
    failure = await _failure(_sender(faults, timeout=0.2))
    assert isinstance(failure, error) and is_retryable(failure)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply.error(400), ProviderRejected),
        (Reply.error(404), ProviderRejected),
        (Reply.error(422), ProviderRejected),
        (Reply.unauthorized(), ProviderAuthError),
        (Reply.graph_error(190, subcode=460), ProviderAuthError),
    ],
    ids=["400", "404", "422", "401", "graph-190"],
)
async def test_final_errors_are_not_retried(
    faults: FaultServer, reply: Reply, error: type[ProviderError]
) -> None:
    faults.script([reply], path="/api/sendText")
    failure = await _failure(_sender(faults))
    assert isinstance(failure, error) and not is_retryable(failure)


async def test_429_retry_after_is_a_floor_for_the_next_attempt(faults: FaultServer) -> None:
    faults.script([Reply.rate_limited(3), Reply.rate_limited(600)], path="/api/sendText")
    first = await _failure(_sender(faults))
    assert isinstance(first, ProviderRateLimited) and is_retryable(first)
    assert retry_after_of(first) == 3.0
    policy = POLICIES["whatsapp_send"]
    assert 3.0 <= next_delay(policy, 1, random.Random(1), retry_after_of(first)) <= 3.9
    later = await _failure(_sender(faults))
    assert retry_after_of(later) == 600.0  # -> RetryInfo for an RPC caller


async def test_persistent_outage_opens_the_breaker(faults: FaultServer) -> None:
    faults.script([Reply.error(503)] * 3, path="/api/sendText")
    clock = FakeClock(auto_advance=True)
    breakers = BreakerRegistry(clock)
    send = _sender(faults)
    for _ in range(3):
        with pytest.raises(ProviderServerError):
            async with breakers.guard("waha"):
                await send()
    assert breakers.get("waha").state is BreakerState.OPEN
    # The next call fails fast: nothing reaches the provider.
    with pytest.raises(CircuitOpen) as info:
        async with breakers.guard("waha"):
            await send()
    assert len(faults.requests_to("/api/sendText")) == 3
    assert info.value.retry_after == pytest.approx(30.0)


def test_our_bugs_are_not_retried() -> None:
    assert not is_retryable(KeyError("missing field"))
