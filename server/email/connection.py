"""The room's kernel: the caller's e-mail connection row, its secrets, and the SMTP client
built from the settings (private-host guard, timeout, extra CA)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import EmailConnection
from server.email.errors import EmailConnectionBroken, EmailNotConnected, GmailTokenExpired
from server.providers.smtp import SmtpClient, SmtpOptions, SmtpServer
from server.security.cipher import SecretContext

if TYPE_CHECKING:
    from server.bootstrap import Deps

GMAIL, SMTP = "gmail_oauth", "smtp_manual"
# ConnectionType names (without prefix) for events and alerts, by conexoes_email.tipo.
CONNECTION_TYPES = {GMAIL: "EMAIL_GMAIL_OAUTH", SMTP: "EMAIL_SMTP_MANUAL"}
ACTIVE = "active"


def password_context(tenant_id: uuid.UUID) -> SecretContext:
    return SecretContext("conexoes_email", "smtp_pass_encrypted", tenant_id)


def access_token_context(tenant_id: uuid.UUID) -> SecretContext:
    return SecretContext("conexoes_email", "access_token_encrypted", tenant_id)


def refresh_token_context(tenant_id: uuid.UUID) -> SecretContext:
    return SecretContext("conexoes_email", "refresh_token_encrypted", tenant_id)


def smtp_client(deps: Deps) -> SmtpClient:
    settings = deps.settings
    return SmtpClient(
        SmtpOptions(
            allow_private_hosts=settings.smtp_allow_private_hosts,
            timeout_s=settings.smtp_timeout_seconds,
            ca_file=settings.smtp_ca_file,
        )
    )


async def row_of(
    tx: AsyncSession, user: uuid.UUID, *, live: bool = True, lock: bool = False
) -> EmailConnection | None:
    """The user's connection row (with `live=False`, also a disconnected one)."""
    query = select(EmailConnection).where(EmailConnection.usuario_id == user)
    if live:
        query = query.where(EmailConnection.deletado_em.is_(None))
    if lock:
        query = query.with_for_update()
    row: EmailConnection | None = await tx.scalar(query)
    return row


def require_usable(row: EmailConnection | None) -> EmailConnection:
    """The connection, if it can send: missing, broken and expired are told apart."""
    if row is None:
        raise EmailNotConnected("connect an e-mail account (Gmail or SMTP) before sending")
    if row.status == "expired" or row.status == "revoked":
        raise GmailTokenExpired("the Gmail authorization ended; connect Gmail again")
    if row.status != ACTIVE:
        raise EmailConnectionBroken(
            "the e-mail connection is in error (" + (row.ultimo_erro or row.status) + "); "
            "test and save it again"
        )
    return row


def smtp_server_of(deps: Deps, row: EmailConnection) -> SmtpServer:
    password = deps.keyring.decrypt(
        row.smtp_pass_encrypted or "", password_context(row.organizacao_id)
    )
    return SmtpServer(
        host=row.smtp_host or "",
        port=row.smtp_port or 587,
        username=row.smtp_user or row.email,
        password=password,
        tls=row.smtp_tls is not False,
    )
