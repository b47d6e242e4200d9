"""The WhatsApp room's kernel: the caller's session row, the platform's WAHA client, the
session's name and webhook URL, and the message channel's name."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import WhatsAppSession
from server.auth.caller import Caller
from server.errors import PermissionNotGranted
from server.protoconv import parse_uuid
from server.providers.waha import WahaClient, WahaCredentials

if TYPE_CHECKING:
    from server.bootstrap import Deps

CONNECTION_TYPE = "whatsapp"
CANAL = "whatsapp"  # mensagens.canal
# The bus event of a session's status change, and the key of its row version (atualizado_em)
# that lets a stream drop an event older than what it already sent.
EVENT_KIND = "WHATSAPP_STATUS"
VERSION_KEY = "row_version"


def session_name(org: uuid.UUID, user: uuid.UUID) -> str:
    """`wpp-{org}-{hash}`: deterministic, 33 chars (WAHA caps names at 54), collision-resistant.

    The spec's `wpp-{org_id}-{user_id}` is 77 characters with full UUIDs. The org prefix keeps
    it readable for operators; 100 bits of SHA-256 over both ids keep it unique. The full ids
    travel in the session's metadata.
    """
    digest = hashlib.sha256(org.bytes + user.bytes).digest()
    return f"wpp-{org.hex[:8]}-{base64.b32encode(digest).decode()[:20].lower()}"


async def waha(deps: Deps) -> WahaClient:
    """A client for the platform's WAHA (super-admin credentials over env defaults)."""
    values = await deps.platform.current(deps.db, "waha")
    return WahaClient(deps.http, WahaCredentials.from_platform(values))


def webhook_url(deps: Deps, tenant_id: uuid.UUID) -> str:
    return f"{deps.settings.public_url}/webhooks/waha/{tenant_id}"


async def own_row(
    tx: AsyncSession, caller: Caller, usuario_id: str = "", *, lock: bool = False
) -> WhatsAppSession | None:
    """The session of `usuario_id` (default: the caller). Members may name only themselves."""
    user = caller.require_user()
    if usuario_id:
        target = parse_uuid(usuario_id, "usuario_id")
        if target != user and not caller.is_admin:
            raise PermissionNotGranted("members manage only their own WhatsApp session")
        user = target
    query = select(WhatsAppSession).where(
        WhatsAppSession.usuario_id == user, WhatsAppSession.deletado_em.is_(None)
    )
    if lock:
        query = query.with_for_update()
    return await tx.scalar(query)
