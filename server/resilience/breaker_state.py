"""Breaker transitions leave the process: stored in `circuit_breakers`, alerted to the super
admins once per outage (resolved when the circuit closes), published as CIRCUIT_STATE_CHANGED."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import CircuitBreakerState
from db.uow import Database
from server.audit import record_audit
from server.auth.caller import Caller, Role
from server.events import Event, publish
from server.resilience.alert_store import note_repeat, raise_alert, resolve_alerts
from server.resilience.breaker import BreakerState, Transition

SERVICE = Caller(role=Role.SERVICE)
PLATFORM = Caller(role=Role.SUPER_ADMIN)
KIND = "circuit_open"


class BreakerAlerts:
    """The BreakerRegistry's on_transition hook: persist the state, alert, publish.

    CLOSED -> OPEN raises a super-admin alert (HALF_OPEN -> OPEN counts on it); CLOSED
    resolves it. Every change is stored in
    `circuit_breakers` (so operators see it in SQL) and published as CIRCUIT_STATE_CHANGED.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __call__(self, transition: Transition) -> None:
        async with self._db.unit_of_work(SERVICE) as session:
            await _store_state(session, transition)
            await record_audit(  # a platform entry: no tenant owns a provider's outage
                session,
                SERVICE,
                f"circuit.{transition.new.value}",
                entity_type="circuit_breakers",
                entity_id=transition.provider,
                details={
                    "de": transition.old.value,
                    "falhas": transition.failures,
                    "causa": transition.cause,
                },
                tenant_id=None,
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
        # The service role may insert platform alerts but not read them back; counting a
        # repeat and resolving read them, so these run as a platform super admin.
        async with self._db.unit_of_work(PLATFORM) as session:
            if transition.new is BreakerState.OPEN:
                await _alert_outage(session, transition)
            elif transition.new is BreakerState.CLOSED:
                await resolve_alerts(
                    session,
                    tenant_id=None,
                    kind=KIND,
                    at=transition.at,
                    entidade_id=transition.provider,
                )


async def _alert_outage(session: AsyncSession, t: Transition) -> None:
    """One alert per outage: the circuit opening after closed raises it (every replica's
    breaker opens on its own; the store counts the others' on it); a failed half-open probe
    re-opening it only counts on the alert still open, and raises none once acknowledged."""
    message = (
        f"Circuit breaker {t.provider} aberto apos {t.failures} falhas "
        f"({t.cause or 'desconhecido'})"
    )
    if t.old is BreakerState.HALF_OPEN:
        await note_repeat(
            session, tenant_id=None, usuario_id=None, kind=KIND, entidade_id=t.provider
        )
        return
    await raise_alert(
        session,
        tenant_id=None,
        audience="super_admin",
        kind=KIND,
        severity="critical",
        message=message,
        details={
            "titulo": "Provedor indisponivel",
            "provider": t.provider,
            "entidade_tipo": "circuit_breakers",
            "entidade_id": t.provider,
        },
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
