"""WatchWhatsAppStatus: subscribe first, then the snapshot, then every change and heartbeats.

Subscribing before reading the snapshot means no change can fall between the two (a change
already in the snapshot may arrive again: the client just applies the newer state). Events
come from the bus, i.e. from PostgreSQL NOTIFY, so a change made by any server replica
reaches every stream. The stream ends when the client cancels or the server shuts down (the
bus ends every subscription); a subscriber that fell behind is told to re-subscribe.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from db.models import User, WhatsAppSession
from server.auth.caller import Caller
from server.errors import PermissionNotGranted, Unavailable
from server.events import Event, SubscriberLagged
from server.protoconv import parse_uuid
from server.whatsapp.connection import EVENT_KIND, VERSION_KEY

if TYPE_CHECKING:
    from server.bootstrap import Deps


@dataclass(frozen=True)
class Snapshot:
    rows: list[tuple[WhatsAppSession, str]]  # each live session with its owner's name
    user: uuid.UUID | None  # the watched user (None: the whole tenant)
    as_of: datetime


@dataclass(frozen=True)
class Heartbeat:
    at: datetime


# What a status stream yields, in order: one Snapshot, then changes (the bus's events) and
# heartbeats.
Update = Snapshot | Event | Heartbeat


def _scope(caller: Caller, all_sessions: bool, usuario_id: str) -> uuid.UUID | None:
    """The watched user, or None for every session of the tenant (admins only)."""
    user = caller.require_user()
    if all_sessions:
        if not caller.is_admin:
            raise PermissionNotGranted("only admins watch every session of the tenant")
        return None
    if usuario_id:
        target = parse_uuid(usuario_id, "usuario_id")
        if target != user and not caller.is_admin:
            raise PermissionNotGranted("members watch only their own WhatsApp session")
        return target
    return user


async def _snapshot(
    deps: Deps, caller: Caller, user: uuid.UUID | None, versions: dict[str, datetime]
) -> Snapshot:
    query = (
        select(WhatsAppSession, User.nome)
        .join(User, User.id == WhatsAppSession.usuario_id)
        .where(WhatsAppSession.deletado_em.is_(None))
        .order_by(User.nome, WhatsAppSession.id)
    )
    if user is not None:
        query = query.where(WhatsAppSession.usuario_id == user)
    as_of = deps.clock.now()
    async with deps.db.unit_of_work(caller) as tx:
        rows = (await tx.execute(query)).all()
    versions.update({str(row.id): row.atualizado_em for row, _ in rows})
    return Snapshot([(row, nome) for row, nome in rows], user, as_of)


def _is_stale(event: Event, versions: dict[str, datetime]) -> bool:
    session_id, version = str(event.data.get("id", "")), event.data.get(VERSION_KEY)
    if not session_id or not isinstance(version, str):
        return False
    seen = versions.get(session_id)
    stamp = event.derived("version", lambda: datetime.fromisoformat(version))
    if seen is not None and stamp <= seen:
        return True
    versions[session_id] = stamp
    return False


async def watch(
    deps: Deps, caller: Caller, *, all_sessions: bool, usuario_id: str
) -> AsyncIterator[Update]:
    tenant = caller.require_tenant()
    user = _scope(caller, all_sessions, usuario_id)

    def accepts(event: Event) -> bool:
        return (
            event.kind == EVENT_KIND
            and event.tenant_id == tenant
            and (user is None or event.user_id == user)
        )

    heartbeat = deps.settings.stream_heartbeat_seconds
    async with deps.bus.watch(accepts, key=(EVENT_KIND, tenant), heartbeat=heartbeat) as events:
        # Newest state sent per session: an event already covered by the snapshot (it was
        # published before we read) or overtaken by a later one is not sent again.
        versions: dict[str, datetime] = {}
        yield await _snapshot(deps, caller, user, versions)
        try:
            async for event in events:
                if event is None:
                    yield Heartbeat(deps.clock.now())
                elif not _is_stale(event, versions):
                    yield event
        except SubscriberLagged as exc:
            raise Unavailable("status stream fell behind; re-subscribe") from exc
