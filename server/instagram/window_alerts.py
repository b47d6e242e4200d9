"""Telling the seller before a conversation's window closes (spec 7.8: "o sistema deve alertar
quando a janela estiver proxima de fechar"): a periodic pass raises one alert (and its ALERT
event) per customer message left unanswered within `CLOSING_SOON` of the 24-hour mark."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import desc, func, select, text
from sqlalchemy.dialects.postgresql import distinct_on

from db.models import Contact, Message
from server.bootstrap import Deps
from server.instagram.connection import CONNECTION_TYPE, tenant_service
from server.instagram.views import CANAL
from server.instagram.window import CLOSING_SOON, STANDARD
from server.resilience.alerts import raise_alert

_log = logging.getLogger(__name__)
TASK = "instagram.window_alerts"
INTERVAL_S = 300.0
KIND = "instagram_window_closing"
_FLAG = "janela_alertada"


async def run_window_alerts(deps: Deps) -> int:
    async with deps.db.system() as session:
        tenants = list((await session.execute(text("SELECT app_list_tenants()"))).scalars())
    raised = 0
    for tenant in tenants:
        try:
            raised += await alert_tenant(deps, tenant)
        except Exception:  # one tenant's trouble never stops the others
            _log.exception("%s of tenant %s failed", TASK, tenant)
    return raised


async def alert_tenant(deps: Deps, tenant: uuid.UUID) -> int:
    now = deps.clock.now()
    when = func.coalesce(Message.enviado_em, Message.criado_em)
    latest = (
        select(Message)
        .where(Message.canal == CANAL, Message.contato_id.is_not(None))
        .order_by(Message.usuario_id, Message.contato_id, desc(when), desc(Message.id))
        .ext(distinct_on(Message.usuario_id, Message.contato_id))
        .subquery()
    )
    raised = 0
    async with deps.db.unit_of_work(tenant_service(tenant)) as tx:
        rows = list(
            await tx.scalars(
                select(Message)
                .join(latest, latest.c.id == Message.id)
                .where(
                    Message.direcao == "inbound",
                    when <= now - (STANDARD - CLOSING_SOON),
                    when > now - STANDARD,
                    Message.metadata_[_FLAG].astext.is_(None),
                )
                .with_for_update(of=Message)
            )
        )
        for message in rows:
            contact = await tx.get(Contact, message.contato_id)
            closes = (message.enviado_em or message.criado_em) + STANDARD
            name = contact.nome if contact else "o contato"
            await raise_alert(
                tx,
                tenant_id=tenant,
                audience="user",
                usuario_id=message.usuario_id,
                kind=KIND,
                severity="warning",
                message=f"A janela de 24 h da conversa com {name} no Instagram fecha as "
                f"{closes.isoformat()}: responda antes.",
                details={
                    "titulo": "Janela do Instagram fechando",
                    "entidade_tipo": "contatos",
                    "entidade_id": str(message.contato_id),
                    "connection_type": CONNECTION_TYPE.upper(),
                    "fecha_em": closes.isoformat(),
                },
            )
            message.metadata_ = {**(message.metadata_ or {}), _FLAG: True}
            raised += 1
    return raised
