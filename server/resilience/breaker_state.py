"""Breaker transitions leave the process: stored in `circuit_breakers`, alerted to the super
admins when a circuit opens (resolved when it closes), published as CIRCUIT_STATE_CHANGED."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import CircuitBreakerState
from db.uow import Database
from server.auth.caller import Caller, Role
from server.events import Event, publish
from server.resilience.alert_store import raise_alert, resolve_alerts
from server.resilience.breaker import BreakerState, Transition

SERVICE = Caller(role=Role.SERVICE)


class BreakerAlerts:
    """The BreakerRegistry's on_transition hook: persist the state, alert, publish.

    OPEN raises a super-admin alert; CLOSED resolves it. Every change is stored in
    `circuit_breakers` (so operators see it in SQL) and published as CIRCUIT_STATE_CHANGED.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __call__(self, transition: Transition) -> None:
        async with self._db.unit_of_work(SERVICE) as session:
            await _store_state(session, transition)
            if transition.new is BreakerState.OPEN:
                await raise_alert(
                    session,
                    tenant_id=None,
                    audience="super_admin",
                    kind="circuit_open",
                    severity="critical",
                    message=f"Circuit breaker {transition.provider} aberto apos "
                    f"{transition.failures} falhas ({transition.cause or 'desconhecido'})",
                    details={
                        "titulo": "Provedor indisponivel",
                        "provider": transition.provider,
                        "entidade_tipo": "circuit_breakers",
                        "entidade_id": transition.provider,
                    },
                )
            await publish(
                session,
                Event(
                    "CIRCUIT_STATE_CHANGED",
                    None,
                    None,
                    {
                        "provider": transition.provider,
                        "old": transition.old.value,
                        "new": transition.new.value,
                        "failures": transition.failures,
                    },
                ),
            )
        if transition.new is BreakerState.CLOSED:
            # The service role may insert platform alerts but not read them back; resolving
            # runs as a platform super admin, which is what reading them requires.
            async with self._db.unit_of_work(Caller(role=Role.SUPER_ADMIN)) as session:
                await resolve_alerts(
                    session,
                    tenant_id=None,
                    kind="circuit_open",
                    at=transition.at,
                    entidade_id=transition.provider,
                )


async def _store_state(session: AsyncSession, t: Transition) -> None:
    opened_at = t.at if t.new is BreakerState.OPEN else None
    values = {
        "provider": t.provider,
        "state": t.new.value,
        "failures": t.failures,
        "updated_at": t.at,
    }
    stmt = insert(CircuitBreakerState).values(**values, opened_at=opened_at)
    update_values: dict[str, Any] = dict(values)
    if opened_at is not None:
        update_values["opened_at"] = opened_at
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["provider"], set_=update_values)
    )
