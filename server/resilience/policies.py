"""Retry policy per operation: the spec's table ("Retry e Resiliencia") as data.

Attempt counting. The spec's column is called "Max Retries", but its generic wrapper
(`withRetry`) loops `for (attempt = 1; attempt <= maxRetries; attempt++)` and rethrows when
`attempt === maxRetries`: the operation runs at most `maxRetries` times in total, and the
queue's `eventos_pendentes.max_tentativas DEFAULT 5` (the CAPI row's 5) agrees. So here
`max_attempts == max_retries`: "CAPI 5" is five calls to Meta, four waits between them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType


class Strategy(enum.StrEnum):
    EXPONENTIAL = "exponential"
    LINEAR = "linear"


@dataclass(frozen=True)
class RetryPolicy:
    """How one kind of provider call is retried.

    Attributes:
        operation: the queue's `operacao` value, e.g. "capi_event".
        max_retries: total attempts, first one included (see the module docstring).
        base_delay_s: delay after the first failed attempt.
        strategy: exponential (base * 2^(n-1)) or linear (base * n).
        timeout_s: limit on a single attempt.
        max_delay_s: cap of the computed backoff, before jitter (the spec's 60 s maxDelay).
        jitter: extra random fraction added on top of the delay (0.30 = 0-30 %).
        max_retry_after_s: cap on a provider's Retry-After. Google asks for hours on
            `quotaExceeded`, so an hour is honoured; a longer (or misparsed) value would
            park a job for days, so it is cut to this.
    """

    operation: str
    max_retries: int
    base_delay_s: float
    strategy: Strategy
    timeout_s: float
    max_delay_s: float = 60.0
    jitter: float = 0.30
    max_retry_after_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_retries < 1:
            raise ValueError(f"{self.operation}: max_retries must be >= 1 (the first attempt)")
        if self.base_delay_s < 0 or self.timeout_s <= 0 or not 0 <= self.jitter <= 1:
            raise ValueError(f"{self.operation}: invalid delays, timeout or jitter")

    @property
    def max_attempts(self) -> int:
        """Calls made before giving up; equal to `max_retries` (the spec's loop)."""
        return self.max_retries


def _p(op: str, retries: int, base: float, strategy: Strategy, timeout: float) -> RetryPolicy:
    return RetryPolicy(op, retries, base, strategy, timeout)


_EXP, _LIN = Strategy.EXPONENTIAL, Strategy.LINEAR

# Spec table, row by row (operation name = eventos_pendentes.operacao).
POLICIES: Mapping[str, RetryPolicy] = MappingProxyType(
    {
        p.operation: p
        for p in (
            _p("oauth_refresh", 3, 1.0, _EXP, 10.0),  # OAuth Token Refresh
            _p("capi_event", 5, 2.0, _EXP, 30.0),  # Envio CAPI
            _p("audience_sync", 3, 5.0, _EXP, 60.0),  # Custom Audience Sync
            _p("lead_processing", 3, 1.0, _LIN, 10.0),  # Lead Ads Webhook Process
            _p("whatsapp_send", 3, 2.0, _EXP, 15.0),  # WhatsApp Send Message
            _p("instagram_send", 3, 2.0, _EXP, 15.0),  # Instagram Send Message
            _p("calendar_create", 3, 1.0, _EXP, 10.0),  # Google Calendar Create
            _p("email_send", 3, 3.0, _EXP, 30.0),  # Email Send (SMTP/Gmail)
            _p("outbound_webhook", 5, 5.0, _EXP, 30.0),  # Webhook Saida (outbound)
            # Not in the spec's table: processing any other inbound provider event (WAHA,
            # Instagram, Calendar) takes the spec's inbound-webhook row.
            _p("inbound_event", 3, 1.0, _LIN, 10.0),
        )
    }
)

# Bounds for tenant-supplied attempt counts: at least the first call, and not so many that a
# tenant's setting can keep a dead job cycling for days.
MIN_TENANT_RETRIES = 1
MAX_TENANT_RETRIES = 10

# configuracoes_extra.retry_config key -> operation whose max_retries it sets.
_TENANT_MAX_RETRIES_KEYS: Mapping[str, str] = MappingProxyType(
    {"capi_max_retries": "capi_event", "webhook_max_retries": "outbound_webhook"}
)


def policy_for(
    operation: str, tenant_retry_config: Mapping[str, object] | None = None
) -> RetryPolicy:
    """The policy for `operation`, with the tenant's overrides applied.

    `tenant_retry_config` is `configuracoes_tenant.configuracoes_extra["retry_config"]`:
    `capi_max_retries` and `webhook_max_retries` (outbound webhooks) set the attempt count,
    clamped to [1, 10]; `desativar_retry_capi: true` makes CAPI a single attempt and wins
    over `capi_max_retries`. Values of the wrong type are ignored (the default stands): a
    typo in a tenant's JSON must not stop its events.

    Raises:
        KeyError: unknown operation (a programming error, not tenant data).
    """
    policy = POLICIES[operation]
    if not tenant_retry_config:
        return policy
    for key, op in _TENANT_MAX_RETRIES_KEYS.items():
        value = tenant_retry_config.get(key)
        # bool is an int subclass; `true` is not a count
        if op == operation and isinstance(value, int) and not isinstance(value, bool):
            clamped = min(MAX_TENANT_RETRIES, max(MIN_TENANT_RETRIES, value))
            policy = replace(policy, max_retries=clamped)
    if operation == "capi_event" and tenant_retry_config.get("desativar_retry_capi") is True:
        policy = replace(policy, max_retries=1)
    return policy
