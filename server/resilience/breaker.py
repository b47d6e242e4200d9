"""Circuit breaker per provider (spec "Circuit Breaker": thresholds and reset timeouts as data).

    CLOSED --N consecutive outage failures--> OPEN --reset timeout--> HALF_OPEN
    HALF_OPEN --the one probe succeeds--> CLOSED;  --it fails--> OPEN (a new reset timeout)

Only outages count (timeouts, network errors, 5xx: `classify.is_outage`). A 400, a dead
token or a rate limit is the provider answering, so it counts as proof of life. Breakers
live in one process: each replica learns for itself that a provider is down, which costs at
most `failure_threshold` calls per replica.

Permits carry the breaker's generation: a result that arrives after the state moved on (a
slow call started before the circuit opened) changes nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from server.errors import CircuitOpen
from server.resilience.classify import is_outage, is_provider_answer
from server.resilience.clock import Clock

_log = logging.getLogger(__name__)


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    """Attributes:
    failure_threshold: consecutive outage failures that open the circuit.
    reset_timeout_s: how long it stays open before one probe is let through.
    probe_busy_retry_after_s: retry_after told to callers turned away while the probe runs.
    """

    failure_threshold: int
    reset_timeout_s: float
    probe_busy_retry_after_s: float = 5.0


BREAKER_CONFIGS: Mapping[str, BreakerConfig] = MappingProxyType(
    {
        "meta_capi": BreakerConfig(5, 60.0),
        "meta_audiences": BreakerConfig(3, 120.0),
        "waha": BreakerConfig(3, 30.0),
        "google_calendar": BreakerConfig(3, 60.0),
        "gmail": BreakerConfig(3, 60.0),
        "instagram": BreakerConfig(3, 60.0),
        "smtp": BreakerConfig(3, 30.0),
        # Not in the spec's table: Graph calls for Lead Ads and pages; CAPI's figures.
        "meta_graph": BreakerConfig(5, 60.0),
    }
)


@dataclass(frozen=True)
class Permit:
    """Leave to make one call. Hand it back through record_success/record_failure/release."""

    provider: str
    generation: int
    probe: bool


@dataclass(frozen=True)
class Transition:
    provider: str
    old: BreakerState
    new: BreakerState
    at: datetime
    failures: int
    cause: str | None  # the last failure's class name (never its message: it may hold data)


@dataclass(frozen=True)
class BreakerSnapshot:
    provider: str
    state: BreakerState
    failures: int
    opened_at: datetime | None
    next_probe_at: datetime | None
    failure_threshold: int
    reset_timeout_s: float


TransitionHook = Callable[[Transition], Awaitable[None]]


class _Notifier:
    """Runs the async on_transition hook without making the breaker's own methods async.

    The breaker's methods stay synchronous so no other task can slip in between a check and
    its state change (that is what keeps the half-open probe single).
    """

    def __init__(self, hook: TransitionHook | None) -> None:
        self._hook = hook
        self._tasks: set[asyncio.Task[None]] = set()
        self._last: asyncio.Task[None] | None = None

    def send(self, transition: Transition) -> None:
        if self._hook is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(
                self._run(self._hook, transition, self._last)
            )
        except RuntimeError:
            _log.warning("breaker transition outside an event loop not reported: %s", transition)
            return
        self._last = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, hook: TransitionHook, transition: Transition, previous: asyncio.Task[None] | None
    ) -> None:
        # In order: a quick open -> half-open -> closed must not be stored as half-open.
        if previous is not None:
            await asyncio.wait({previous})
        try:
            await hook(transition)
        except Exception:
            # A failing alert must not break the calls the breaker guards.
            _log.exception("on_transition hook failed for %s", transition)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks))


class CircuitBreaker:
    def __init__(
        self,
        provider: str,
        config: BreakerConfig,
        clock: Clock,
        *,
        on_transition: TransitionHook | None = None,
        _notifier: _Notifier | None = None,
    ) -> None:
        self.provider = provider
        self.config = config
        self._clock = clock
        self._notifier = _notifier or _Notifier(on_transition)
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._failures = 0
        self._opened_at: datetime | None = None
        self._probe_at = 0.0  # monotonic time the next probe is allowed
        self._probe_started: float | None = None  # monotonic; None when no probe is out
        self._last_cause: str | None = None

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> Permit:
        """A permit for one call, or CircuitOpen (retry_after = seconds until a probe may go)."""
        now = self._clock.monotonic()
        if self._state is BreakerState.CLOSED:
            return Permit(self.provider, self._generation, probe=False)
        if self._state is BreakerState.OPEN:
            if now < self._probe_at:
                raise self._open_error(self._probe_at - now)
            self._move(BreakerState.HALF_OPEN)
        # HALF_OPEN: one probe at a time. A probe never handed back (its caller vanished
        # without release) is presumed lost after a reset timeout, so the circuit cannot stick.
        if self._probe_started is not None and (
            now - self._probe_started < self.config.reset_timeout_s
        ):
            raise self._open_error(self.config.probe_busy_retry_after_s)
        self._probe_started = now
        return Permit(self.provider, self._generation, probe=True)

    def record_success(self, permit: Permit) -> None:
        if permit.generation != self._generation:
            return
        self._failures = 0
        if self._state is BreakerState.HALF_OPEN and permit.probe:
            self._close()

    def record_failure(self, permit: Permit, exc: BaseException) -> None:
        """Count `exc` if it is an outage; a provider's definite answer counts as a success;
        anything else (our bug, cancellation) hands the permit back without a verdict."""
        if not is_outage(exc):
            if is_provider_answer(exc):
                self.record_success(permit)
            else:
                self.release(permit)
            return
        if permit.generation != self._generation:
            return
        self._last_cause = type(exc).__name__
        self._failures += 1
        probe_failed = self._state is BreakerState.HALF_OPEN and permit.probe
        too_many = (
            self._state is BreakerState.CLOSED and self._failures >= self.config.failure_threshold
        )
        if probe_failed or too_many:
            self._open()

    def release(self, permit: Permit) -> None:
        """Hand back a permit whose call says nothing about the provider."""
        if permit.probe and permit.generation == self._generation:
            self._probe_started = None

    def settle(self, permit: Permit, error: BaseException | None) -> None:
        """Reports how the call `permit` allowed went: None for a success, else what it
        raised (an outage counts, a provider's answer proves life, anything else such as a
        cancellation hands the permit back). Every guarded call ends here, once."""
        if error is None:
            self.record_success(permit)
        else:
            self.record_failure(permit, error)

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[Permit]:
        """`async with breaker.guard():` around one call. Put per-call timeouts inside it, so
        the breaker sees the TimeoutError rather than the cancellation."""
        permit = self.allow()
        try:
            yield permit
        except BaseException as exc:
            self.settle(permit, exc)
            raise
        self.settle(permit, None)

    def snapshot(self) -> BreakerSnapshot:
        next_probe = None
        if self._opened_at is not None and self._state is not BreakerState.CLOSED:
            next_probe = self._opened_at + timedelta(seconds=self.config.reset_timeout_s)
        return BreakerSnapshot(
            provider=self.provider,
            state=self._state,
            failures=self._failures,
            opened_at=self._opened_at if self._state is not BreakerState.CLOSED else None,
            next_probe_at=next_probe,
            failure_threshold=self.config.failure_threshold,
            reset_timeout_s=self.config.reset_timeout_s,
        )

    def _open(self) -> None:
        self._opened_at = self._clock.now()
        self._probe_at = self._clock.monotonic() + self.config.reset_timeout_s
        self._probe_started = None
        self._move(BreakerState.OPEN)

    def _close(self) -> None:
        self._failures = 0
        self._probe_started = None
        self._last_cause = None
        self._move(BreakerState.CLOSED)

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if new is not BreakerState.HALF_OPEN:
            # Results of calls permitted before this change are stale from now on.
            self._generation += 1
        self._notifier.send(
            Transition(self.provider, old, new, self._clock.now(), self._failures, self._last_cause)
        )

    def _open_error(self, retry_after: float) -> CircuitOpen:
        return CircuitOpen(
            f"{self.provider} is failing; calls are paused",
            metadata={"provider": self.provider},
            retry_after=max(retry_after, 0.0),
        )


# Breakers whose permit the current task (and the tasks it starts) already holds: the
# worker's attempt of a job. A provider call inside it is counted once, by the worker.
_held: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "breakers_held", default=frozenset()
)


@asynccontextmanager
async def _already_guarded() -> AsyncIterator[Permit | None]:
    yield None


class BreakerRegistry:
    """Every provider's breaker, built from `configs`; the one object the app wires in."""

    def __init__(
        self,
        clock: Clock,
        configs: Mapping[str, BreakerConfig] = BREAKER_CONFIGS,
        *,
        on_transition: TransitionHook | None = None,
    ) -> None:
        self._notifier = _Notifier(on_transition)
        self._breakers = {
            name: CircuitBreaker(name, config, clock, _notifier=self._notifier)
            for name, config in configs.items()
        }

    def get(self, provider: str) -> CircuitBreaker:
        """Raises KeyError for a provider without a config: a typo must not go unguarded."""
        return self._breakers[provider]

    def guard(self, provider: str) -> AbstractAsyncContextManager[Permit | None]:
        """`async with breakers.guard("waha"):` around one provider call. Inside a job whose
        operation names this breaker, the worker holds the permit already: a no-op then."""
        breaker = self.get(provider)
        if provider in _held.get():
            return _already_guarded()
        return breaker.guard()

    @contextmanager
    def held(self, provider: str | None) -> Iterator[None]:
        """Marks `provider`'s breaker as guarded by the caller (the worker, around a job's
        handler) for the block, so guards inside it do not count the same call again."""
        if provider is None:
            yield
            return
        token = _held.set(_held.get() | {provider})
        try:
            yield
        finally:
            _held.reset(token)

    def snapshot(self) -> list[BreakerSnapshot]:
        return [b.snapshot() for b in self._breakers.values()]

    async def drain(self) -> None:
        """Wait for on_transition hooks already started (tests, shutdown)."""
        await self._notifier.drain()
