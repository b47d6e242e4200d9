"""The platform mailer: alerts leave the app by e-mail (the spec's alert table).

`raise_alert` marks an alert of a mailed kind `details.email = "pending"` in the transaction
that raises it, so no alert is lost to a crash. This sweep (scheduled, one replica at a time)
sends each pending one through the SMTP account of the `mailer` platform credentials: platform
alerts to `super_admin_emails`, a tenant's to its active admins and the connection's owner.
A failed send is retried on the next sweeps (SMTP 4xx, network) up to `MAX_ATTEMPTS`; then,
or at once on a final refusal, it is marked `failed` with the reason and the alert stays
visible in the app like every alert. Unconfigured, nothing is sent and alerts stay pending.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Alert, User
from server.auth.caller import Caller, Role
from server.providers.errors import ProviderError
from server.providers.smtp import SmtpClient, SmtpOptions, SmtpServer

if TYPE_CHECKING:
    from server.bootstrap import Deps

_log = logging.getLogger(__name__)

PROVIDER = "mailer"
INTERVAL_S = 30.0
MAX_ATTEMPTS = 5
BATCH = 50


@dataclass(frozen=True)
class MailerConfig:
    server: SmtpServer
    sender: str
    super_admins: tuple[str, ...]


async def mailer_config(deps: Deps) -> MailerConfig | None:
    """The platform mailer, or None while its host or sender is not set."""
    values = await deps.platform.current(deps.db, PROVIDER)
    host, sender = values.get("host", ""), values.get("from_address", "")
    if not host or not sender:
        return None
    port = values.get("port", "")
    return MailerConfig(
        server=SmtpServer(
            host=host,
            port=int(port) if port.isdigit() else 587,
            username=values.get("username", "") or sender,
            password=values.get("password", ""),
        ),
        sender=sender,
        super_admins=tuple(e for e in values.get("super_admin_emails", "").split(",") if e),
    )


async def send_pending_alert_mail(deps: Deps) -> int:
    """One sweep over the platform's and every tenant's pending alerts. Returns mails sent."""
    config = await mailer_config(deps)
    if config is None:
        return 0
    smtp = SmtpClient(
        SmtpOptions(
            allow_private_hosts=deps.settings.smtp_allow_private_hosts,
            timeout_s=deps.settings.smtp_timeout_seconds,
            ca_file=deps.settings.smtp_ca_file,
        )
    )
    # Platform alerts are readable by a super admin only.
    sent = await _sweep(deps, smtp, config, Caller(role=Role.SUPER_ADMIN), None)
    async with deps.db.system() as session:
        tenants = list((await session.execute(text("SELECT app_list_tenants()"))).scalars())
    for tenant in tenants:
        sent += await _sweep(
            deps, smtp, config, Caller(role=Role.SERVICE, tenant_id=tenant), tenant
        )
    return sent


async def _sweep(
    deps: Deps,
    smtp: SmtpClient,
    config: MailerConfig,
    caller: Caller,
    tenant: uuid.UUID | None,
) -> int:
    async with deps.db.unit_of_work(caller) as session:
        pending = list(
            await session.scalars(
                select(Alert)
                .where(
                    Alert.organizacao_id.is_not_distinct_from(tenant),
                    Alert.details["email"].astext == "pending",
                )
                .order_by(Alert.criado_em)
                .limit(BATCH)
            )
        )
        admins = await _tenant_admins(session) if tenant is not None and pending else {}
    sent = 0
    for alert in pending:
        if tenant is None:
            recipients: Sequence[str] = config.super_admins
        else:
            owner = admins.get(alert.usuario_id) if alert.usuario_id else None
            recipients = sorted({*admins.get(None, ()), *(owner or ())})
        outcome = await _send(smtp, config, alert, recipients)
        sent += outcome.get("email") == "sent"
        async with deps.db.unit_of_work(caller) as session:
            row = await session.get(Alert, alert.id, with_for_update=True)
            if row is not None and (row.details or {}).get("email") == "pending":
                row.details = {**(row.details or {}), **outcome}
    return sent


async def _tenant_admins(session: AsyncSession) -> dict[uuid.UUID | None, tuple[str, ...]]:
    """The tenant's active admins' addresses under None, and every user's own under its id."""
    users = (
        await session.execute(
            select(User.id, User.email, User.role).where(
                User.ativo.is_(True),
                User.deletado_em.is_(None),
                User.email.is_not(None),
                or_(User.role == "admin", User.role == "member"),
            )
        )
    ).all()
    found: dict[uuid.UUID | None, tuple[str, ...]] = {
        None: tuple(str(u.email) for u in users if u.role == "admin")
    }
    for u in users:
        found[u.id] = (str(u.email),)
    return found


async def _send(
    smtp: SmtpClient, config: MailerConfig, alert: Alert, recipients: Sequence[str]
) -> dict[str, Any]:
    """Sends one alert; returns the `details` keys that record the outcome."""
    attempts = int((alert.details or {}).get("email_tentativas") or 0) + 1
    if not recipients:
        return {"email": "no_recipients", "email_tentativas": attempts}
    try:
        refused = await smtp.send(
            config.server, config.sender, list(recipients), _message(config, alert, recipients)
        )
    except ProviderError as exc:
        _log.warning("mailing alert %s failed: %r", alert.id, exc)
        final = not exc.retryable or attempts >= MAX_ATTEMPTS
        return {
            "email": "failed" if final else "pending",
            "email_tentativas": attempts,
            "email_erro": type(exc).__name__,
        }
    outcome: dict[str, Any] = {"email": "sent", "email_tentativas": attempts}
    if refused:
        outcome["email_recusados"] = sorted(refused)
    return outcome


def _message(config: MailerConfig, alert: Alert, recipients: Sequence[str]) -> bytes:
    details = alert.details or {}
    title = str(details.get("titulo") or alert.kind)
    mail = EmailMessage()
    mail["Subject"] = f"[Renove Conexoes] {title}"
    mail["From"] = config.sender
    mail["To"] = ", ".join(recipients)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=config.sender.rpartition("@")[2] or None)
    severity = {"critical": "critico", "warning": "aviso"}.get(alert.severity, alert.severity)
    mail.set_content(
        f"{alert.message}\n\nGravidade: {severity}\nAlerta: {alert.id}\n"
        "Veja e reconheca o alerta em Configuracoes > Conexoes.\n"
    )
    return mail.as_bytes()
