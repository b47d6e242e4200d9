"""The WhatsApp room's kernel: the caller's session row, the platform's WAHA client, the
session's name and webhook URL, and the message channel's name."""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import WhatsAppSession
from server.auth.caller import Caller, Role
from server.errors import PermissionNotGranted
from server.protoconv import parse_uuid
from server.providers.errors import PlatformCredentialsInvalid
from server.providers.waha import WahaClient, WahaCredentials
from server.resilience.alerts import raise_alert

if TYPE_CHECKING:
    from server.bootstrap import Deps

_log = logging.getLogger(__name__)
CONNECTION_TYPE = "whatsapp"
KEY_REJECTED_KIND = "waha_platform_key_rejected"
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
    """A client for the platform's WAHA (super-admin credentials over env defaults). A refused
    API key alerts the super admins (PLATFORM_CREDENTIALS_INVALID), not the member."""
    values = await deps.platform.current(deps.db, "waha")

    async def key_rejected(exc: PlatformCredentialsInvalid) -> None:
        await alert_key_rejected(deps, exc)

    return WahaClient(
        deps.http, WahaCredentials.from_platform(values), on_key_rejected=key_rejected
    )


async def alert_key_rejected(deps: Deps, exc: PlatformCredentialsInvalid) -> None:
    """One open super-admin alert while WAHA keeps refusing the platform's API key."""
    _log.error("WAHA refused the platform's API key: %r", exc)
    try:
        # Platform alerts are readable by the platform only: deduplication must see them.
        async with deps.db.unit_of_work(Caller(role=Role.SUPER_ADMIN)) as session:
            await raise_alert(
                session,
                tenant_id=None,
                audience="super_admin",
                kind=KEY_REJECTED_KIND,
                severity="critical",
                message="WAHA recusou a API key da plataforma: corrija as credenciais WAHA"
                " (ConnectionsService.UpdatePlatformCredentials); nenhuma sessao WhatsApp"
                " funciona ate la",
                details={"titulo": "API key do WAHA recusada",
                         "entidade_tipo": "platform_credentials", "status_code": exc.status_code},
                dedupe=True,
            )  # fmt: skip
    except Exception:  # the member still gets the error; the alert is best effort
        _log.exception("could not raise the WAHA key alert")


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
