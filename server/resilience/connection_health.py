"""A connection's credential refused for good, and its recovery: the row's status, the alerts
to its admins and owner, and the CONNECTION_CHANGED event, in the caller's transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import record_audit
from server.auth.caller import Caller, Role
from server.outbox import record_change
from server.resilience.alert_store import raise_alert, resolve_alerts
from server.security.redaction import redact


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
    await _announce(session, tenant_id, owner_id, connection_type, connection_id, status, True)
    if alert_id is not None:  # a repeat while the alert is open is the same break
        await _audit(session, tenant_id, model, connection_id, f"connection.marked_{status}", error)
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
    await _announce(session, tenant_id, owner_id, connection_type, connection_id, status, False)
    await _audit(session, tenant_id, model, connection_id, "connection.recovered", None)


async def _audit(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    model: type[Any],
    connection_id: uuid.UUID,
    action: str,
    error: str | None,
) -> None:
    """Status changes nobody asked for are audited as the service's own acts."""
    await record_audit(
        session,
        Caller(role=Role.SERVICE, tenant_id=tenant_id),
        action,
        entity_type=_table_name(model),
        entity_id=connection_id,
        details={"erro": error} if error else {},
    )


def _table_name(model: type[Any]) -> str:
    return str(getattr(model, "__tablename__", model.__name__))


async def _announce(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    owner_id: uuid.UUID | None,
    connection_type: str,
    connection_id: uuid.UUID,
    status: str,
    requires_reconnect: bool,
) -> None:
    data = {
        "connection_type": connection_type,
        "connection_id": str(connection_id),
        "status": status,
        "requires_reconnect": requires_reconnect,
    }
    await record_change(session, tenant_id, "CONNECTION_CHANGED", data, user_id=owner_id)
