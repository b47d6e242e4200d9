"""A tenant admin's outbound webhook endpoints: create (the secret shown once), list, update,
delete. Secrets are stored encrypted, bound to their row's table, column and tenant."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import OutboundWebhook
from server.audit import record_audit
from server.auth.caller import Caller
from server.errors import FieldViolation, InvalidArgument, NotFound
from server.outbound_webhooks.targets import target_problems
from server.outbox import FEED_KINDS
from server.security.cipher import Keyring, SecretContext

WRITABLE = frozenset({"url", "eventos", "descricao", "ativo"})


class WebhookNotFound(NotFound):
    reason = "WEBHOOK_NOT_FOUND"


@dataclass(frozen=True)
class EndpointInput:
    url: str = ""
    eventos: Sequence[str] = ()  # EventKind names without prefix
    descricao: str = ""
    ativo: bool = True


@dataclass(frozen=True)
class TargetRules:
    """How targets are judged: the deployment's private-target switch and DNS servers."""

    allow_private: bool = False
    nameservers: Sequence[str] = ()


def secret_context(tenant_id: uuid.UUID) -> SecretContext:
    return SecretContext("webhooks_saida", "segredo_encrypted", tenant_id)


async def _problems(
    data: EndpointInput, targets: TargetRules, paths: set[str]
) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    if "url" in paths:
        problems += await target_problems(
            data.url,
            allow_private=targets.allow_private,
            nameservers=targets.nameservers,
            name="webhook.url",
        )
    if "eventos" in paths:
        unknown = sorted(set(data.eventos) - FEED_KINDS)
        if unknown:
            problems.append(
                FieldViolation("webhook.eventos", f"not on the change feed: {', '.join(unknown)}")
            )
    if "descricao" in paths and len(data.descricao) > 255:
        problems.append(FieldViolation("webhook.descricao", "at most 255 characters"))
    return problems


async def create(
    session: AsyncSession,
    caller: Caller,
    keyring: Keyring,
    data: EndpointInput,
    *,
    targets: TargetRules,
) -> tuple[OutboundWebhook, str]:
    """Returns the endpoint and its new signing secret (never readable again)."""
    problems = await _problems(data, targets, set(WRITABLE))
    if problems:
        raise InvalidArgument("invalid webhook", problems)
    tenant = caller.require_tenant()
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = OutboundWebhook(
        organizacao_id=tenant,
        url=data.url,
        eventos=sorted(set(data.eventos)),
        descricao=data.descricao.strip() or None,
        ativo=data.ativo,
        segredo_encrypted=keyring.encrypt(secret, secret_context(tenant)),
        criado_por=caller.user_id,
    )
    session.add(row)
    await session.flush()
    await record_audit(
        session,
        caller,
        "webhook_saida.created",
        entity_type="webhooks_saida",
        entity_id=row.id,
        details={"url": data.url, "eventos": list(row.eventos)},
    )
    await session.refresh(row)
    return row, secret


async def get(session: AsyncSession, webhook_id: str) -> OutboundWebhook:
    try:
        key = uuid.UUID(webhook_id)
    except ValueError as exc:
        raise InvalidArgument.field("id", "must be a UUID") from exc
    row = await session.scalar(
        select(OutboundWebhook).where(
            OutboundWebhook.id == key, OutboundWebhook.deletado_em.is_(None)
        )
    )
    if row is None:
        raise WebhookNotFound(f"no outbound webhook {webhook_id}")
    return row


async def update(
    session: AsyncSession,
    caller: Caller,
    webhook_id: str,
    data: EndpointInput,
    paths: set[str],
    *,
    targets: TargetRules,
) -> OutboundWebhook:
    bad = sorted(paths - WRITABLE)
    if bad or not paths:
        raise InvalidArgument(
            "invalid update_mask",
            [FieldViolation("update_mask", f"{p}: not a writable field") for p in bad]
            or [
                FieldViolation("update_mask", "name at least one of url, eventos, descricao, ativo")
            ],
        )
    row = await get(session, webhook_id)
    problems = await _problems(data, targets, paths)
    if problems:
        raise InvalidArgument("invalid webhook", problems)
    if "url" in paths:
        row.url = data.url
    if "eventos" in paths:
        row.eventos = sorted(set(data.eventos))
    if "descricao" in paths:
        row.descricao = data.descricao.strip() or None
    if "ativo" in paths:
        row.ativo = data.ativo
    await session.flush()
    await record_audit(
        session,
        caller,
        "webhook_saida.updated",
        entity_type="webhooks_saida",
        entity_id=row.id,
        details={"fields": sorted(paths)},
    )
    await session.refresh(row)
    return row


async def delete(session: AsyncSession, caller: Caller, webhook_id: str) -> None:
    row = await get(session, webhook_id)
    row.deletado_em, row.ativo = func.now(), False
    await record_audit(
        session,
        caller,
        "webhook_saida.deleted",
        entity_type="webhooks_saida",
        entity_id=row.id,
        details={"url": row.url},
    )


async def list_page(
    session: AsyncSession, *, after: ColumnElement[bool] | None, limit: int
) -> list[OutboundWebhook]:
    """Newest first, by (criado_em, id) descending; `after` continues from a page token
    (server.paging.keyset_after)."""
    query = select(OutboundWebhook).where(OutboundWebhook.deletado_em.is_(None))
    if after is not None:
        query = query.where(after)
    query = query.order_by(OutboundWebhook.criado_em.desc(), OutboundWebhook.id.desc())
    return list(await session.scalars(query.limit(limit)))
