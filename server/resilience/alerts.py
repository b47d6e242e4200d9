"""Alerts (the spec's "Alertas" table): stored in `alerts` and pushed on the event bus.

    circuit breaker OPEN                  -> super admin         kind circuit_open
    more than 10 jobs waiting for retry   -> tenant admin        kind retry_backlog
    permanent failure (max retries)       -> audit + tenant admin  kind permanent_failure
    token refresh failed                  -> connection 'error' + tenant admin (and owner)

An alert is written in the unit of work of the change it reports and its ALERT event is
published in the same transaction, so a rolled-back change never alerts anyone.

Visibility (ListAlerts, WatchEvents): a platform alert (no tenant) is for super admins; a
tenant's admins see all of its alerts; a member sees the alerts whose `usuario_id` is theirs.
Fields the table has no column for (title, entity, who acknowledged, when it was resolved)
live in `details` under the keys of `DETAIL_KEYS`.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Alert, CircuitBreakerState
from db.uow import Database
from server.auth.caller import Caller, Role
from server.events import Event, publish
from server.outbox.record import DELIVERY_TIPO, record_change
from server.resilience.breaker import BreakerState, Transition
from server.resilience.queue import BACKLOG_ALERT_THRESHOLD, backlog_by_tenant
from server.security.redaction import redact

_log = logging.getLogger(__name__)

AUDIENCES = ("super_admin", "tenant_admin", "user")
SEVERITIES = ("info", "warning", "critical")
# Keys of `details` that stand in for columns (see the module docstring).
DETAIL_KEYS = frozenset(
    {"titulo", "entidade_tipo", "entidade_id", "connection_type", "reconhecido_por", "resolvido_em"}
)

SERVICE = Caller(role=Role.SERVICE)


async def raise_alert(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None,
    audience: str,
    kind: str,
    severity: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    usuario_id: uuid.UUID | None = None,
    dedupe: bool = False,
) -> uuid.UUID | None:
    """Stores an alert and publishes Event("ALERT") in the session's transaction.

    Args:
        tenant_id: None for a platform alert (audience super_admin).
        details: extra facts; `titulo`, `entidade_tipo`, `entidade_id`, `connection_type`
            fill the matching Alert fields. Never put secrets here.
        dedupe: raise nothing while an open (unacknowledged, unresolved) alert of the same
            tenant, user and kind exists. Needs a session that can read the alerts table.

    Returns:
        The new alert's id, or None when deduplicated.
    """
    if audience not in AUDIENCES or severity not in SEVERITIES:
        raise ValueError(f"bad audience/severity: {audience}/{severity}")
    if dedupe:
        # Serialise concurrent raisers of the same alert; the lock ends with the transaction.
        key = f"alert:{tenant_id}:{usuario_id}:{kind}"
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key}
        )
        existing = await session.scalar(
            select(Alert.id)
            .where(
                Alert.organizacao_id.is_not_distinct_from(tenant_id),
                Alert.usuario_id.is_not_distinct_from(usuario_id),
                Alert.kind == kind,
                *open_alert(),
            )
            .limit(1)
        )
        if existing is not None:
            return None
    alert_id = uuid.uuid4()
    session.add(
        Alert(
            id=alert_id,
            organizacao_id=tenant_id,
            audience=audience,
            usuario_id=usuario_id,
            kind=kind,
            severity=severity,
            message=redact(message),
            details=dict(details or {}),
        )
    )
    await session.flush()
    facts = {
        "id": str(alert_id),
        "kind": kind,
        "severity": severity,
        "audience": audience,
        "message": redact(message)[:500],
    }
    if tenant_id is None:  # platform alerts are no tenant's change feed
        await publish(session, Event("ALERT", None, usuario_id, facts))
    else:
        # A dead-lettered webhook delivery is not delivered by webhook (no feedback loop).
        about_delivery = (details or {}).get("tipo") == DELIVERY_TIPO
        await record_change(
            session, tenant_id, "ALERT", facts, user_id=usuario_id, deliver=not about_delivery
        )
    return alert_id


def open_alert() -> tuple[Any, ...]:
    """WHERE clauses of an open alert: not acknowledged, not resolved."""
    return (Alert.lido_em.is_(None), Alert.details["resolvido_em"].astext.is_(None))


def visible_to(caller: Caller) -> tuple[Any, ...]:
    """WHERE clauses of the alerts `caller` may read (RLS already fences the tenant)."""
    if caller.tenant_id is None:
        return (Alert.organizacao_id.is_(None),)
    if caller.is_admin:
        return (Alert.organizacao_id == caller.tenant_id,)
    return (Alert.organizacao_id == caller.tenant_id, Alert.usuario_id == caller.user_id)


async def open_alert_count(session: AsyncSession, caller: Caller) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Alert).where(*visible_to(caller), *open_alert())
    )
    return int(count or 0)


async def resolve_alerts(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None,
    kind: str,
    at: dt.datetime,
    entidade_id: str | None = None,
) -> None:
    """Marks open alerts of `kind` resolved (their condition cleared)."""
    query = (
        update(Alert)
        .where(
            Alert.organizacao_id.is_not_distinct_from(tenant_id), Alert.kind == kind, *open_alert()
        )
        .values(
            details=Alert.details.op("||")(func.jsonb_build_object("resolvido_em", at.isoformat()))
        )
    )
    if entidade_id is not None:
        query = query.where(Alert.details["entidade_id"].astext == entidade_id)
    await session.execute(query)


async def connection_broken(
    session: AsyncSession,
    *,
    model: type[Any],
    connection_id: uuid.UUID,
    tenant_id: uuid.UUID,
    owner_id: uuid.UUID | None,
    connection_type: str,
    error: str,
    status: str = "error",
    kind: str = "token_refresh_failed",
) -> uuid.UUID | None:
    """A credential was refused for good: mark the connection, alert its admins and owner.

    Call it in the tenant's unit of work (a service caller with the tenant set). The row of
    `model` (e.g. GoogleConnection) gets `status` and, if it has one, `ultimo_erro`; the alert
    (kind `token_refresh_failed` by default) goes to the tenant admins with `usuario_id` set to
    the owner, so the owner sees it too; a CONNECTION_CHANGED event follows. An open alert for
    the same connection is not repeated.

    Args:
        connection_type: a ConnectionType name without prefix ("GOOGLE_CALENDAR", ...).
        error: what the provider said (redacted and cut here).
    """
    values: dict[str, Any] = {"status": status}
    error = redact(error)[:500]
    if hasattr(model, "ultimo_erro"):
        values["ultimo_erro"] = error
    await session.execute(update(model).where(model.id == connection_id).values(**values))
    alert_id = await raise_alert(
        session,
        tenant_id=tenant_id,
        audience="tenant_admin",
        usuario_id=owner_id,
        kind=kind,
        severity="critical",
        message=f"A conexao {connection_type} precisa ser reconectada: {error}",
        details={
            "titulo": "Conexao precisa ser reconectada",
            "entidade_tipo": _table_name(model),
            "entidade_id": str(connection_id),
            "connection_type": connection_type,
        },
        dedupe=True,
    )
    await record_change(
        session,
        tenant_id,
        "CONNECTION_CHANGED",
        {
            "connection_type": connection_type,
            "connection_id": str(connection_id),
            "status": status,
            "requires_reconnect": True,
        },
        user_id=owner_id,
    )
    return alert_id


async def connection_recovered(
    session: AsyncSession,
    *,
    model: type[Any],
    connection_id: uuid.UUID,
    tenant_id: uuid.UUID,
    owner_id: uuid.UUID | None,
    connection_type: str,
    at: dt.datetime,
    status: str = "active",
) -> None:
    """The other half of `connection_broken`: active again, its alerts resolved, an event."""
    values: dict[str, Any] = {"status": status}
    if hasattr(model, "ultimo_erro"):
        values["ultimo_erro"] = None
    await session.execute(update(model).where(model.id == connection_id).values(**values))
    for kind in ("token_refresh_failed", "connection_lost", "token_expiring"):
        await resolve_alerts(
            session, tenant_id=tenant_id, kind=kind, at=at, entidade_id=str(connection_id)
        )
    await record_change(
        session,
        tenant_id,
        "CONNECTION_CHANGED",
        {
            "connection_type": connection_type,
            "connection_id": str(connection_id),
            "status": status,
            "requires_reconnect": False,
        },
        user_id=owner_id,
    )


def _table_name(model: type[Any]) -> str:
    return str(getattr(model, "__tablename__", model.__name__))


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
    from sqlalchemy.dialects.postgresql import insert

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


async def alert_retry_backlogs(
    db: Database, *, more_than: int = BACKLOG_ALERT_THRESHOLD
) -> list[uuid.UUID]:
    """The spec's "> 10 eventos na fila de retry": one open alert per tenant over the line.

    Returns the tenants alerted this time (those with an open alert already are skipped).
    """
    async with db.system() as session:
        backlogs = await backlog_by_tenant(session, more_than)
    alerted = []
    for tenant_id, count in backlogs:
        async with db.unit_of_work(Caller(role=Role.SERVICE, tenant_id=tenant_id)) as session:
            raised = await raise_alert(
                session,
                tenant_id=tenant_id,
                audience="tenant_admin",
                kind="retry_backlog",
                severity="warning",
                message=f"{count} eventos aguardando nova tentativa (limite {more_than})",
                details={"titulo": "Fila de retry acumulada", "pendentes": count},
                dedupe=True,
            )
        if raised is not None:
            alerted.append(tenant_id)
    return alerted
