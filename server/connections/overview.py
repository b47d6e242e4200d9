"""The connections overview: every kind of connection, for one user or the whole tenant.

Row-level security already limits what the caller can read (a member sees only their own
personal rows); this module shapes rows into summaries and says whether the caller may
connect each kind (the spec's member matrix, from the same rules the interceptor enforces).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2 as rpb
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    ConversionsApiConfig,
    CustomAudience,
    EmailConnection,
    GoogleConnection,
    InstagramConnection,
    MetaConnection,
    User,
    WhatsAppSession,
)
from server.auth.caller import Caller, Role
from server.catalog import KINDS, MemberAccess, Scope
from server.protoconv import timestamp

T = rpb.ConnectionType
S = rpb.ConnectionStatus
Kind: TypeAlias = "rpb.ConnectionType.ValueType"

# Our stored statuses -> the contract's, for every connection table.
STATUS: dict[str, rpb.ConnectionStatus.ValueType] = {
    "connected": S.CONNECTION_STATUS_ACTIVE,
    "active": S.CONNECTION_STATUS_ACTIVE,
    "qr_pending": S.CONNECTION_STATUS_PENDING,
    "connecting": S.CONNECTION_STATUS_PENDING,
    "testing": S.CONNECTION_STATUS_TESTING,
    "expired": S.CONNECTION_STATUS_EXPIRED,
    "revoked": S.CONNECTION_STATUS_REVOKED,
    "failed": S.CONNECTION_STATUS_ERROR,
    "error": S.CONNECTION_STATUS_ERROR,
    "disconnected": S.CONNECTION_STATUS_DISCONNECTED,
}
# Scope and member rules come from the connection catalog (server/catalog.py).
PERSONAL: tuple[Kind, ...] = tuple(k.type for k in KINDS.values() if k.scope is Scope.PERSONAL)
TENANT_WIDE: tuple[Kind, ...] = tuple(k.type for k in KINDS.values() if k.scope is Scope.TENANT)
GRANT_FOR: dict[Kind, str] = {k.type: k.grant for k in KINDS.values() if k.grant is not None}
ADMIN_ONLY: set[Kind] = {k.type for k in KINDS.values() if k.access is MemberAccess.ADMIN_ONLY}
_RECONNECT = {S.CONNECTION_STATUS_EXPIRED, S.CONNECTION_STATUS_REVOKED, S.CONNECTION_STATUS_ERROR}


@dataclass(frozen=True)
class Row:
    """One connection, whatever its table."""

    kind: Kind
    id: uuid.UUID
    owner: uuid.UUID | None
    status: str
    label: str = ""
    connected_at: dt.datetime | None = None
    error: str = ""
    error_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    activity_at: dt.datetime | None = None


def permission(kind: Kind, caller: Caller, grants: frozenset[str]) -> tuple[bool, str]:
    if caller.role in (Role.ADMIN, Role.SUPER_ADMIN):
        return True, ""
    if kind in ADMIN_ONLY:
        return False, "only admins manage this connection"
    grant = GRANT_FOR.get(kind)
    if grant is not None and grant not in grants:
        return False, f"an admin must grant 'conexao.{grant}'"
    return True, ""


def summary(
    row: Row | None,
    kind: Kind,
    caller: Caller,
    grants: frozenset[str],
    names: dict[uuid.UUID, User],
) -> pb.ConnectionSummary:
    allowed, why = permission(kind, caller, grants)
    scope = pb.CONNECTION_SCOPE_PERSONAL if kind in PERSONAL else pb.CONNECTION_SCOPE_TENANT
    out = pb.ConnectionSummary(
        connection_type=kind, scope=scope, permitido=allowed, motivo_bloqueio=why
    )
    if row is None:
        out.status = S.CONNECTION_STATUS_DISCONNECTED
        if kind in PERSONAL and caller.user_id is not None:
            out.owner.CopyFrom(_user_ref(caller.user_id, names))
        return out
    status = STATUS.get(row.status, S.CONNECTION_STATUS_UNSPECIFIED)
    out.connection_id = str(row.id)
    out.status = status
    out.account_label = row.label
    out.ultimo_erro = row.error
    out.requires_reconnect = status in _RECONNECT
    if row.owner is not None:
        out.owner.CopyFrom(_user_ref(row.owner, names))
    for field, value in (
        ("conectado_em", row.connected_at),
        ("ultimo_erro_em", row.error_at),
        ("token_expires_at", row.expires_at),
        ("ultima_atividade_em", row.activity_at),
    ):
        if value is not None:
            getattr(out, field).CopyFrom(timestamp(value))
    return out


def _user_ref(user_id: uuid.UUID, names: dict[uuid.UUID, User]) -> rpb.UserRef:
    user = names.get(user_id)
    return rpb.UserRef(
        usuario_id=str(user_id),
        nome=user.nome if user else "",
        email=(user.email or "") if user else "",
    )


async def load_rows(session: AsyncSession, user: uuid.UUID | None) -> list[Row]:
    """Every live connection the session may read; personal ones of `user` (None: all)."""
    rows: list[Row] = []

    def mine(model: Any) -> Any:
        query = (
            select(model).where(model.deletado_em.is_(None))
            if hasattr(model, "deletado_em")
            else select(model)
        )
        return query.where(model.usuario_id == user) if user is not None else query

    for w in await session.scalars(mine(WhatsAppSession)):
        rows.append(
            Row(
                T.CONNECTION_TYPE_WHATSAPP,
                w.id,
                w.usuario_id,
                w.status,
                w.phone_number or "",
                w.conectado_em,
                w.ultimo_erro or "",
                None,
                None,
                w.ultima_mensagem_em,
            )
        )
    for g in await session.scalars(mine(GoogleConnection)):
        rows.append(
            Row(
                T.CONNECTION_TYPE_GOOGLE_CALENDAR,
                g.id,
                g.usuario_id,
                g.status,
                g.google_user_email or "",
                g.conectado_em,
                g.ultimo_erro or "",
                None,
                g.token_expires_at,
                g.ultimo_sync,
            )
        )
    for e in await session.scalars(mine(EmailConnection)):
        kind = (
            T.CONNECTION_TYPE_EMAIL_GMAIL_OAUTH
            if e.tipo == "gmail_oauth"
            else T.CONNECTION_TYPE_EMAIL_SMTP_MANUAL
        )
        rows.append(
            Row(
                kind,
                e.id,
                e.usuario_id,
                e.status,
                e.email or "",
                e.conectado_em,
                e.ultimo_erro or "",
                None,
                e.token_expires_at,
                e.ultimo_envio,
            )
        )
    for i in await session.scalars(mine(InstagramConnection)):
        rows.append(
            Row(
                T.CONNECTION_TYPE_INSTAGRAM_DIRECT,
                i.id,
                i.usuario_id,
                i.status,
                i.instagram_username or "",
                i.conectado_em,
                i.ultimo_erro or "",
                None,
                i.token_expires_at,
                i.ultima_mensagem_em,
            )
        )
    meta = await session.scalar(select(MetaConnection).where(MetaConnection.deletado_em.is_(None)))
    if meta is not None:
        rows.append(
            Row(
                T.CONNECTION_TYPE_META_LEAD_ADS,
                meta.id,
                None,
                meta.status,
                meta.meta_user_name or "",
                meta.criado_em,
                meta.ultimo_erro or "",
                None,
                meta.token_expires_at,
                meta.ultimo_sync,
            )
        )
        audiences = await session.scalar(select(CustomAudience.id).limit(1))
        if audiences is not None:
            rows.append(
                Row(
                    T.CONNECTION_TYPE_META_CUSTOM_AUDIENCES,
                    meta.id,
                    None,
                    meta.status,
                    meta.meta_user_name or "",
                    meta.criado_em,
                )
            )
    capi = await session.scalar(select(ConversionsApiConfig))
    if capi is not None:
        # A token Meta refused shows as such even while sending is switched on.
        capi_status = (
            capi.status if capi.status != "active" else "active" if capi.ativo else "disconnected"
        )
        rows.append(
            Row(
                T.CONNECTION_TYPE_META_CONVERSIONS_API,
                capi.id,
                None,
                capi_status,
                capi.pixel_id,
                capi.criado_em,
                "",
                None,
                None,
                capi.ultimo_evento_enviado,
            )
        )
    return rows


def assemble(
    rows: Sequence[Row],
    caller: Caller,
    grants: frozenset[str],
    names: dict[uuid.UUID, User],
    *,
    whole_tenant: bool,
) -> list[pb.ConnectionSummary]:
    """One summary per kind for a user (disconnected where absent); every row for a tenant."""
    if whole_tenant:
        return [summary(r, r.kind, caller, grants, names) for r in rows]
    by_kind: dict[Kind, Row] = {}
    for r in rows:
        by_kind.setdefault(r.kind, r)
    kinds: Iterable[Kind] = (*PERSONAL, *TENANT_WIDE)
    return [summary(by_kind.get(k), k, caller, grants, names) for k in kinds]
