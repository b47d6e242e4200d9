"""The tenant's Conversions API configuration (config_conversions_api): read, save, its token.

The access token is write-only: stored encrypted (bound to this table, column and tenant) and
only ever decrypted to call Meta.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ConversionsApiConfig
from server.bootstrap import Deps
from server.conversions import parking
from server.conversions.events import DEFAULT_ENABLED, EVENT_NAMES
from server.errors import FieldViolation, InvalidArgument
from server.providers.meta_capi import MetaCapiClient
from server.security.cipher import SecretContext

PIXEL_MAX = 50
TOKEN_MAX = 1000


def token_context(tenant_id: uuid.UUID) -> SecretContext:
    return SecretContext("config_conversions_api", "access_token_encrypted", tenant_id)


def capi_client(deps: Deps, *, guarded: bool) -> MetaCapiClient:
    """Jobs run behind the worker's meta_capi breaker; RPCs guard their own call."""
    return MetaCapiClient(
        deps.http,
        deps.settings.meta_graph_url,
        deps.settings.meta_graph_version,
        guard=(lambda: deps.breakers.guard("meta_capi")) if guarded else None,
    )


async def load(session: AsyncSession) -> ConversionsApiConfig | None:
    row: ConversionsApiConfig | None = await session.scalar(select(ConversionsApiConfig))
    return row


def enabled(row: ConversionsApiConfig, crm_event: str) -> bool:
    events = row.eventos_habilitados or {}
    return bool(events.get(crm_event, DEFAULT_ENABLED[crm_event]))


def send_value(row: ConversionsApiConfig) -> bool:
    won = (row.config_eventos or {}).get("won") or {}
    return bool(won.get("enviar_valor", True))


@dataclass(frozen=True)
class ConfigChange:
    """The fields a save applies (None = keep what is stored)."""

    pixel_id: str | None = None
    access_token: str | None = None
    events: Mapping[str, bool] = field(default_factory=dict)
    enviar_valor: bool | None = None
    ativo: bool | None = None


def validate(change: ConfigChange, existing: ConversionsApiConfig | None) -> None:
    problems = []
    if change.pixel_id is not None:
        if not change.pixel_id.isdigit() or len(change.pixel_id) > PIXEL_MAX:
            problems.append(FieldViolation("pixel_id", "the pixel (dataset) id is numeric"))
    elif existing is None:
        problems.append(FieldViolation("pixel_id", "required on the first save"))
    if change.access_token is not None and (
        len(change.access_token) > TOKEN_MAX or any(c.isspace() for c in change.access_token)
    ):
        problems.append(FieldViolation("access_token", "not an access token"))
    if change.access_token is None and existing is None:
        problems.append(FieldViolation("access_token", "required on the first save"))
    for key in change.events:
        if key not in EVENT_NAMES:
            problems.append(FieldViolation(f"eventos_habilitados.{key}", "unknown event"))
    if problems:
        raise InvalidArgument("invalid CAPI configuration", problems)


async def save(
    deps: Deps, session: AsyncSession, tenant_id: uuid.UUID, change: ConfigChange
) -> ConversionsApiConfig:
    existing = await load(session)
    validate(change, existing)
    was_dead = existing is not None and parking.is_dead(existing)
    row = existing or ConversionsApiConfig(
        organizacao_id=tenant_id,
        eventos_habilitados=dict(DEFAULT_ENABLED),
        config_eventos={"won": {"enviar_valor": True}},
        ativo=False,
        status="active",
    )
    if change.pixel_id is not None:
        row.pixel_id = change.pixel_id
    if change.access_token is not None:
        row.access_token_encrypted = deps.keyring.encrypt(
            change.access_token, token_context(tenant_id)
        )
        # A new token is a fresh start: the refusal of the old one no longer stands.
        row.status = "active"
        row.ultimo_erro = None
    if change.events:
        row.eventos_habilitados = {**(row.eventos_habilitados or DEFAULT_ENABLED), **change.events}
    if change.enviar_valor is not None:
        row.config_eventos = {
            **(row.config_eventos or {}),
            "won": {"enviar_valor": change.enviar_valor},
        }
    if change.ativo is not None:
        row.ativo = change.ativo
    if existing is None:
        session.add(row)
    row.atualizado_em = dt.datetime.now(dt.UTC)
    await session.flush()
    if was_dead and change.access_token is not None:
        await parking.recover(session, row, deps.clock.now())
    await session.refresh(row)
    return row


def access_token(deps: Deps, row: ConversionsApiConfig) -> str:
    return deps.keyring.decrypt(row.access_token_encrypted, token_context(row.organizacao_id))
