"""The tenant's records over a period, read in the caller's unit of work (RLS scopes them):
status history, accepted webhooks, token refresh attempts, finished jobs; keyed by the
contract's connection type word (`whatsapp`, `meta_lead_ads`, ...)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from server.kpis.availability import Change
from server.resilience import operations as ops

# Which connection type each queued operation serves. E-mail sends take the type of the
# e-mail they send (`_EMAIL_TYPES`); outbound webhooks are left out (a tenant's endpoint is
# no connection).
OPERATION_TYPES: dict[str, str] = {
    ops.WAHA_EVENT.name: "whatsapp",
    ops.WHATSAPP_SEND.name: "whatsapp",
    ops.WAHA_CLEANUP.name: "whatsapp",
    ops.META_LEADGEN.name: "meta_lead_ads",
    ops.CAPI_EVENT.name: "meta_conversions_api",
    ops.AUDIENCE_SYNC.name: "meta_custom_audiences",
    ops.AUDIENCE_DELETE.name: "meta_custom_audiences",
    ops.AUDIENCE_REMOVE.name: "meta_custom_audiences",
    ops.INSTAGRAM_EVENT.name: "instagram_direct",
    ops.INSTAGRAM_SEND.name: "instagram_direct",
    ops.GOOGLE_CALENDAR_NOTIFICATION.name: "google_calendar",
    ops.GOOGLE_CALENDAR_CREATE.name: "google_calendar",
}
# emails_enviados.tipo -> connection type, for `email_send` jobs.
_EMAIL_TYPES: dict[str, str] = {
    "gmail_oauth": "email_gmail_oauth",
    "smtp_manual": "email_smtp_manual",
}
# webhook_inbox.provider -> connection type.
PROVIDER_TYPES: dict[str, str] = {
    "waha": "whatsapp",
    "meta_leadgen": "meta_lead_ads",
    "instagram": "instagram_direct",
    "google_calendar": "google_calendar",
}


@dataclass
class Counts:
    total: int = 0
    good: int = 0


@dataclass
class Figures:
    history: dict[tuple[str, uuid.UUID], list[Change]] = field(default_factory=dict)
    webhooks: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    refreshes: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    jobs: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))


_HISTORY = text(
    "SELECT tipo, conexao_id, status, em FROM conexoes_status_historico"
    " WHERE em < :end AND (CAST(:tipo AS text) IS NULL OR tipo = :tipo)"
    " ORDER BY tipo, conexao_id, em, id"
)
_WEBHOOKS = text(
    "SELECT provider, count(*), count(processed_at) FROM webhook_inbox"
    " WHERE verdict = 'accepted' AND received_at >= :start AND received_at < :end"
    " GROUP BY provider"
)
_REFRESHES = text(
    "SELECT tipo, count(*), count(*) FILTER (WHERE sucesso) FROM tokens_renovacoes"
    " WHERE em >= :start AND em < :end GROUP BY tipo"
)
# A job's last change is when it finished (completed or dead-lettered). An e-mail send
# carries its e-mail's id; the e-mail says which connection type sent it.
_JOBS = text(
    "SELECT j.operacao, e.tipo, count(*), count(*) FILTER (WHERE j.status = 'completed')"
    " FROM eventos_pendentes j LEFT JOIN emails_enviados e"
    "   ON j.operacao = :email_send AND e.id = CAST(j.payload->>'email_id' AS uuid)"
    " WHERE j.status IN ('completed', 'failed')"
    " AND j.atualizado_em >= :start AND j.atualizado_em < :end GROUP BY j.operacao, e.tipo"
)


async def read_figures(
    session: AsyncSession, start: dt.datetime, end: dt.datetime, only_type: str | None
) -> Figures:
    figures = Figures()
    period = {"start": start, "end": end}
    for tipo, connection_id, status, at in await session.execute(
        _HISTORY, {"end": end, "tipo": only_type}
    ):
        figures.history.setdefault((tipo, connection_id), []).append(Change(at, status))
    for provider, total, processed in await session.execute(_WEBHOOKS, period):
        _add(figures.webhooks, PROVIDER_TYPES.get(provider), total, processed)
    for tipo, total, succeeded in await session.execute(_REFRESHES, period):
        _add(figures.refreshes, tipo, total, succeeded)
    jobs = await session.execute(_JOBS, {**period, "email_send": ops.EMAIL_SEND.name})
    for operation, email_type, total, completed in jobs:
        tipo = _EMAIL_TYPES.get(email_type) if email_type else OPERATION_TYPES.get(operation)
        _add(figures.jobs, tipo, total, completed)
    return figures


def _add(into: dict[str, Counts], tipo: str | None, total: int, good: int) -> None:
    if tipo is None:
        return
    counts = into[tipo]
    counts.total += int(total)
    counts.good += int(good)
