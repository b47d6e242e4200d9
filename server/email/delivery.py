"""The `email_send` job: hand one stored e-mail to its sender's SMTP server or to Gmail.

SMTP 4xx is retried under the e-mail policy, 5xx is final; a 535 marks the connection
`error` and alerts its owner (and the tenant admins) to save a new password. Gmail's rate
limits are retried after the wait Google asks for (an hour for a daily limit); a dead grant
is marked by the token keeper. The e-mail is marked `failed` when the job gives up (by the
handler on a final error, by `dead_lettered` when the last attempt timed out or its worker was
lost), `sent` (with the connection's counters) when it went. A failed e-mail the dead-letter
queue retries is sent like a pending one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import EmailConnection, SentEmail
from server.auth.caller import Caller, Role
from server.email import gmail
from server.email.connection import (
    CONNECTION_TYPES,
    GMAIL,
    require_usable,
    row_of,
    smtp_server_of,
)
from server.email.detection import help_preset
from server.email.errors import EmailSenderChanged
from server.email.sending import record_status
from server.errors import CircuitOpen, DomainError
from server.providers.smtp import SmtpAuthFailed, SmtpClient
from server.resilience.alerts import connection_broken
from server.resilience.jobs import Job, before_the_provider
from server.security.redaction import redact

if TYPE_CHECKING:
    from server.bootstrap import Deps


# A failed e-mail is sent again when an admin retries its dead-lettered job.
_UNSENT = ("pending", "failed")


@dataclass(frozen=True)
class _Sent:
    provider_id: str = ""
    thread_id: str = ""
    refused: str = ""  # recipients the SMTP server refused while accepting the others


async def deliver(deps: Deps, smtp: SmtpClient, job: Job) -> None:
    caller = Caller(role=Role.SERVICE, tenant_id=job.tenant_id)
    email_id = uuid.UUID(str(job.payload["email_id"]))
    with before_the_provider():
        async with deps.db.unit_of_work(caller) as tx:
            email = await tx.get(SentEmail, email_id)
            if email is None or email.status not in _UNSENT:
                return  # sent already (a repeated job) or gone
            connection = await row_of(tx, email.usuario_id)
    try:
        usable = require_usable(connection)
        _same_sender(usable, email)
        if usable.tipo == GMAIL:
            went = await gmail.send(deps, usable, email)
            sent = _Sent(provider_id=went.id, thread_id=went.thread_id)
        else:
            sent = await _send_smtp(deps, smtp, usable, email)
    except CircuitOpen:
        raise  # the worker postpones the job without spending the attempt: nothing failed yet
    except SmtpAuthFailed as exc:
        assert connection is not None
        await _credentials_refused(deps, caller, connection, exc)
        await _mark_failed(deps, caller, email_id, exc)
        raise
    except DomainError as exc:
        if not exc.retryable or job.attempt >= job.max_attempts:
            await _mark_failed(deps, caller, email_id, exc)
        raise
    await _mark_sent(deps, caller, email_id, usable.id, sent)


def _same_sender(connection: EmailConnection, email: SentEmail) -> None:
    """The message's From and transport were fixed when it was built (and stored)."""
    if connection.tipo != email.tipo or connection.email.casefold() != email.remetente.casefold():
        raise EmailSenderChanged(
            f"O e-mail foi escrito para sair por {email.remetente}, mas a conexao de e-mail "
            f"agora envia por {connection.email}. Escreva-o de novo."
        )


async def _send_smtp(
    deps: Deps, smtp: SmtpClient, connection: EmailConnection, email: SentEmail
) -> _Sent:
    recipients = [
        *email.destinatarios.get("to", []),
        *email.destinatarios.get("cc", []),
        *email.destinatarios.get("bcc", []),
    ]
    refused = await smtp.send(
        smtp_server_of(deps, connection), connection.email, recipients, email.mensagem
    )
    return _Sent(refused="; ".join(f"{a}: {r}" for a, r in refused.items()))


async def _credentials_refused(
    deps: Deps, caller: Caller, connection: EmailConnection, exc: SmtpAuthFailed
) -> None:
    preset = help_preset(connection.smtp_host or "", connection.email)
    help_text = f" Veja: {preset.help_url}" if preset and preset.help_url else ""
    async with deps.db.unit_of_work(caller) as tx:
        await connection_broken(
            tx,
            model=EmailConnection,
            connection_id=connection.id,
            tenant_id=connection.organizacao_id,
            owner_id=connection.usuario_id,
            connection_type=CONNECTION_TYPES[connection.tipo],
            error=exc.reading + help_text,
            status="error",
            kind="connection_lost",
        )


async def _mark_failed(deps: Deps, caller: Caller, email_id: uuid.UUID, exc: Exception) -> None:
    reading = getattr(exc, "reading", None) or str(exc)
    async with deps.db.unit_of_work(caller) as tx:
        await _fail(tx, email_id, reading, _UNSENT)


async def dead_lettered(tx: AsyncSession, job: Job, error: str) -> None:
    """The worker gave up on the job: an e-mail still pending (its last attempt timed out, or
    its worker was lost) is failed with the job's last error, in the dead-lettering `tx`."""
    await _fail(tx, uuid.UUID(str(job.payload["email_id"])), error, ("pending",))


async def _fail(
    tx: AsyncSession, email_id: uuid.UUID, reading: str, from_statuses: tuple[str, ...]
) -> None:
    email = await tx.get(SentEmail, email_id, with_for_update=True)
    if email is None or email.status not in from_statuses:
        return
    email.status = "failed"
    email.erro = redact(reading)[:500]
    await record_status(tx, email)


async def _mark_sent(
    deps: Deps, caller: Caller, email_id: uuid.UUID, connection_id: uuid.UUID, sent: _Sent
) -> None:
    now = deps.clock.now()
    async with deps.db.unit_of_work(caller) as tx:
        email = await tx.get(SentEmail, email_id, with_for_update=True)
        if email is None or email.status not in _UNSENT:
            return
        email.status = "sent"
        email.enviado_em = now
        email.provider_message_id = sent.provider_id or None
        email.thread_id = sent.thread_id or None
        email.erro = redact(f"recusados: {sent.refused}")[:500] if sent.refused else None
        await tx.execute(
            update(EmailConnection)
            .where(EmailConnection.id == connection_id)
            .values(
                total_emails_enviados=func.coalesce(EmailConnection.total_emails_enviados, 0) + 1,
                ultimo_envio=now,
            )
            .execution_options(synchronize_session=False)
        )
        await record_status(tx, email)
