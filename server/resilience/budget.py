"""A job's attempt budget: its operation's policy with the tenant's overrides.

The attempt budget is the row's `max_tentativas`, except that on a job's first attempt a
tenant override of its policy's count (`configuracoes_extra.retry_config`) replaces it.
Each worker keeps a tenant's retry_config for RETRY_CONFIG_TTL_S seconds (one read per
tenant, not one per job): a changed override governs jobs this worker starts within that time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping

from sqlalchemy import select

from db.models import TenantSettings
from db.uow import Database
from server.auth.caller import Caller, Role
from server.resilience.jobs import HandlerSpec
from server.resilience.policies import RetryPolicy, policy_for
from server.resilience.queue import ClaimedJob

PolicyLookup = Callable[[str, Mapping[str, object] | None], RetryPolicy]
RetryConfig = dict[str, object] | None

# How long a worker reuses a tenant's retry_config, and for how many tenants at most.
RETRY_CONFIG_TTL_S = 5.0
_RETRY_CONFIG_CACHE_MAX = 1024


def tenant_service(tenant_id: uuid.UUID) -> Caller:
    """The identity a worker acts as inside one tenant (RLS scopes it to that tenant)."""
    return Caller(role=Role.SERVICE, tenant_id=tenant_id)


class AttemptBudget:
    def __init__(self, db: Database, policy_lookup: PolicyLookup = policy_for) -> None:
        """Args:
        policy_lookup: (policy row, tenant retry_config) -> policy; tests shorten timeouts.
        """
        self._db = db
        self._policy_lookup = policy_lookup
        # tenant -> (monotonic time read, its retry_config): see RETRY_CONFIG_TTL_S
        self._retry_configs: dict[uuid.UUID, tuple[float, RetryConfig]] = {}

    async def of(self, job: ClaimedJob, spec: HandlerSpec) -> tuple[RetryPolicy, int]:
        """The policy the attempt runs under and the job's attempt budget."""
        retry_config = await self._retry_config(job.tenant_id)
        row = spec.operation.policy.operation
        policy = self._policy_lookup(row, retry_config)
        overridden = policy.max_attempts != self._policy_lookup(row, None).max_attempts
        if job.tentativas == 0 and overridden:
            return policy, policy.max_attempts
        return policy, job.max_tentativas

    async def _retry_config(self, tenant_id: uuid.UUID) -> RetryConfig:
        """The tenant's `configuracoes_extra.retry_config`, read at most every
        RETRY_CONFIG_TTL_S seconds per tenant."""
        now = time.monotonic()
        cached = self._retry_configs.get(tenant_id)
        if cached is not None and now - cached[0] < RETRY_CONFIG_TTL_S:
            return cached[1]
        async with self._db.unit_of_work(tenant_service(tenant_id)) as session:
            extra = await session.scalar(select(TenantSettings.configuracoes_extra))
        retry_config = (extra or {}).get("retry_config") if isinstance(extra, dict) else None
        if not isinstance(retry_config, dict):
            retry_config = None
        if len(self._retry_configs) >= _RETRY_CONFIG_CACHE_MAX:
            self._retry_configs = {
                t: v for t, v in self._retry_configs.items() if now - v[0] < RETRY_CONFIG_TTL_S
            }
            if len(self._retry_configs) >= _RETRY_CONFIG_CACHE_MAX:
                self._retry_configs.clear()
        self._retry_configs[tenant_id] = (now, retry_config)
        return retry_config
