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
from datetime import datetime
from typing import TYPE_CHECKING

from renove.conexoes.v1 import resources_pb2
from renove.conexoes.v1 import whatsapp_service_pb2 as pb
from sqlalchemy import select

from db.models import User, WhatsAppSession
from server.auth.caller import Caller
from server.errors import PermissionNotGranted, Unavailable
from server.events import Event, SubscriberLagged
from server.events.heartbeats import with_heartbeats
from server.protoconv import parse_uuid
from server.whatsapp.lifecycle import EVENT_KIND, VERSION_KEY
from server.whatsapp.views import session_from_json, session_proto

if TYPE_CHECKING:
    from server.bootstrap import Deps


def _scope(caller: Caller, request: pb.WatchWhatsAppStatusRequest) -> uuid.UUID | None:
    """The watched user, or None for every session of the tenant (admins only)."""
    user = caller.require_user()
    if request.all_sessions:
        if not caller.is_admin:
            raise PermissionNotGranted("only admins watch every session of the tenant")
        return None
    if request.usuario_id:
        target = parse_uuid(request.usuario_id, "usuario_id")
        if target != user and not caller.is_admin:
            raise PermissionNotGranted("members watch only their own WhatsApp session")
        return target
    return user


async def _snapshot(
    deps: Deps, caller: Caller, user: uuid.UUID | None, versions: dict[str, datetime]
) -> pb.WatchWhatsAppStatusResponse:
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
    sessions = [session_proto(row, nome) for row, nome in rows]
    versions.update({str(row.id): row.atualizado_em for row, _ in rows})
    if user is not None and not sessions:
        # Never started: the same "disconnected, no id" GetWhatsAppStatus answers.
        sessions = [
            pb.WhatsAppSession(usuario_id=str(user), status=pb.WAHA_SESSION_STATUS_DISCONNECTED)
        ]
    snapshot = pb.WhatsAppStatusSnapshot(sessions=sessions)
    snapshot.as_of.FromDatetime(as_of)
    return pb.WatchWhatsAppStatusResponse(snapshot=snapshot)


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


def _response(event: Event) -> pb.WatchWhatsAppStatusResponse:
    # Shared by every stream of this process; grpc only reads it to serialize.
    return event.derived(
        "whatsapp_status",
        lambda: pb.WatchWhatsAppStatusResponse(session=session_from_json(dict(event.data))),
    )


async def watch(
    deps: Deps, caller: Caller, request: pb.WatchWhatsAppStatusRequest
) -> AsyncIterator[pb.WatchWhatsAppStatusResponse]:
    tenant = caller.require_tenant()
    user = _scope(caller, request)

    def accepts(event: Event) -> bool:
        return (
            event.kind == EVENT_KIND
            and event.tenant_id == tenant
            and (user is None or event.user_id == user)
        )

    heartbeat = deps.settings.stream_heartbeat_seconds
    async with deps.bus.subscribe(accepts) as events:
        # Newest state sent per session: an event already covered by the snapshot (it was
        # published before we read) or overtaken by a later one is not sent again.
        versions: dict[str, datetime] = {}
        yield await _snapshot(deps, caller, user, versions)
        try:
            async for event in with_heartbeats(events, heartbeat):
                if event is None:
                    beat = resources_pb2.Heartbeat()
                    beat.sent_at.FromDatetime(deps.clock.now())
                    yield pb.WatchWhatsAppStatusResponse(heartbeat=beat)
                elif not _is_stale(event, versions):
                    yield _response(event)
        except SubscriberLagged as exc:
            raise Unavailable("status stream fell behind; re-subscribe") from exc
