"""The alert store (the spec's "Alertas" table): stored in `alerts` and pushed on the event bus.

    circuit breaker OPEN                  -> super admin         kind circuit_open
    more than 10 jobs waiting for retry   -> tenant admin        kind retry_backlog
    permanent failure (max retries)       -> audit + tenant admin  kind permanent_failure
    token refresh failed                  -> connection 'error' + tenant admin (and owner)

An alert is written in the unit of work of the change it reports and its ALERT event is
published in the same transaction, so a rolled-back change never alerts anyone.

While an alert stays open (neither acknowledged nor resolved), the same condition reported
again (same tenant, user, kind and entity) updates it (`ocorrencias`, `ultima_ocorrencia`,
the latest message) instead of raising another: nobody is told twice about one outage.

Visibility (ListAlerts, WatchEvents): a platform alert (no tenant) is for super admins; a
tenant's admins see all of its alerts; a member sees the alerts whose `usuario_id` is theirs.
Fields the table has no column for (title, entity, who acknowledged, when it was resolved)
live in `details` under the keys of `DETAIL_KEYS`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Alert
from db.uow import Database
from server.auth.caller import Caller, Role
from server.events import Event, publish
from server.outbox.record import DELIVERY_TIPO, record_change
from server.resilience.queue import BACKLOG_ALERT_THRESHOLD, backlog_by_tenant
from server.security.redaction import redact

AUDIENCES = ("super_admin", "tenant_admin", "user")
SEVERITIES = ("info", "warning", "critical")
# Kinds e-mailed by the platform mailer (the spec's alert table): to the super admins for
# platform alerts, to the tenant's admins (and the connection's owner) for the others.
MAILED_KINDS = frozenset(
    {
        "circuit_open",
        "meta_app_rejected",
        "permanent_failure",
        "connection_lost",
        "token_expiring",
        "token_refresh_failed",
        "meta_token_expired",
        "meta_token_revoked",
    }
)
# Keys of `details` that stand in for columns (see the module docstring).
DETAIL_KEYS = frozenset(
    {
        "titulo",
        "entidade_tipo",
        "entidade_id",
        "connection_type",
        "reconhecido_por",
        "resolvido_em",
        "ocorrencias",
        "ultima_ocorrencia",
    }
)


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
    dedupe: bool = True,
) -> uuid.UUID | None:
    """Stores an alert and publishes Event("ALERT") in the session's transaction.

    Args:
        tenant_id: None for a platform alert (audience super_admin).
        details: extra facts; `titulo`, `entidade_tipo`, `entidade_id`, `connection_type`
            fill the matching Alert fields. Never put secrets here.
        dedupe: while an open alert of the same tenant, user, kind and entity exists, count
            the repeat on it instead (see the module docstring). Takes effect only where the
            session can read the alerts table (platform alerts: a super admin's session).

    Returns:
        The new alert's id, or None when the repeat was counted on an open alert.
    """
    if audience not in AUDIENCES or severity not in SEVERITIES:
        raise ValueError(f"bad audience/severity: {audience}/{severity}")
    entidade_id = (details or {}).get("entidade_id")
    if dedupe and await note_repeat(
        session,
        tenant_id=tenant_id,
        usuario_id=usuario_id,
        kind=kind,
        entidade_id=None if entidade_id is None else str(entidade_id),
        message=message,
    ):
        return None
    alert_id = uuid.uuid4()
    stored = dict(details or {})
    if kind in MAILED_KINDS:
        stored["email"] = "pending"  # the mailer's sweep sends it (server/connections/alert_mail)
    session.add(
        Alert(
            id=alert_id,
            organizacao_id=tenant_id,
            audience=audience,
            usuario_id=usuario_id,
            kind=kind,
            severity=severity,
            message=redact(message),
            details=stored,
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


async def note_repeat(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None,
    usuario_id: uuid.UUID | None,
    kind: str,
    entidade_id: str | None,
    message: str | None = None,
) -> bool:
    """Counts a repeat of a condition on its open alert. Returns False when none is open."""
    # Serialise concurrent raisers of the same alert; the lock ends with the transaction.
    key = f"alert:{tenant_id}:{usuario_id}:{kind}:{entidade_id}"
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})
    same_entity = (
        Alert.details["entidade_id"].astext.is_(None)
        if entidade_id is None
        else Alert.details["entidade_id"].astext == entidade_id
    )
    existing = await session.scalar(
        select(Alert)
        .where(
            Alert.organizacao_id.is_not_distinct_from(tenant_id),
            Alert.usuario_id.is_not_distinct_from(usuario_id),
            Alert.kind == kind,
            same_entity,
            *open_alert(),
        )
        .order_by(Alert.criado_em)
        .limit(1)
        .with_for_update()
    )
    if existing is None:
        return False
    details = dict(existing.details or {})
    details["ocorrencias"] = int(details.get("ocorrencias") or 1) + 1
    now = await session.scalar(select(func.now()))
    assert now is not None
    details["ultima_ocorrencia"] = now.isoformat()
    existing.details = details
    if message is not None:
        existing.message = redact(message)
    await session.flush()
    return True


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
