"""Ad accounts and audiences: list, create at Meta and here, read, update, delete.

Every Meta call uses the tenant's Meta connection (the Lead Ads login, which asks for
`ads_management`); a dead token marks that connection and the caller gets TOKEN_EXPIRED or
TOKEN_REVOKED (server.audiences.connection.call_meta).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import CustomAudience, CustomAudienceMember
from server.audiences.connection import active_connection, call_meta, user_token
from server.audiences.errors import AdAccountNotFound, AudienceNotFound, TermsNotAccepted
from server.audit import record_audit
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.errors import FieldViolation, InvalidArgument
from server.providers.errors import ProviderPermissionDenied
from server.providers.meta_audiences import AdAccount, MetaAudiencesClient
from server.resilience.jobs import enqueue
from server.resilience.operations import AUDIENCE_DELETE

TRIGGERS = ("lead", "mql", "schedule", "won", "lost")
FILE_SOURCES = ("USER_PROVIDED_ONLY", "PARTNER_PROVIDED_ONLY", "BOTH_USER_AND_PARTNER_PROVIDED")

WRITABLE = frozenset(
    {"audience_name", "description", "tipo_sincronizacao", "evento_gatilho", "ativo"}
)


def client(deps: Deps) -> MetaAudiencesClient:
    return MetaAudiencesClient(
        deps.http, deps.settings.meta_graph_url, deps.settings.meta_graph_version
    )


async def meta_token(deps: Deps, caller: Caller) -> tuple[uuid.UUID, str]:
    """The Meta connection's id and user token (FAILED_PRECONDITION when not usable)."""
    async with deps.db.unit_of_work(caller) as session:
        conn = await active_connection(session)
        return conn.id, user_token(deps, conn)


async def ad_accounts(deps: Deps, caller: Caller) -> list[AdAccount]:
    assert caller.tenant_id is not None
    _, token = await meta_token(deps, caller)
    async with deps.breakers.guard("meta_audiences"):
        return await call_meta(deps, caller.tenant_id, lambda: client(deps).ad_accounts(token))


@dataclass(frozen=True)
class AudienceInput:
    audience_name: str = ""
    description: str = ""
    ad_account_id: str = ""
    tipo_sincronizacao: str = "evento"
    evento_gatilho: str | None = None
    ativo: bool = True
    customer_file_source: str = "USER_PROVIDED_ONLY"


def validate(values: AudienceInput, fields: Collection[str]) -> None:
    problems = []
    if "audience_name" in fields and not 0 < len(values.audience_name.strip()) <= 255:
        problems.append(FieldViolation("audience.audience_name", "required, at most 255"))
    if "ad_account_id" in fields and not (
        values.ad_account_id.startswith("act_") and values.ad_account_id[4:].isdigit()
    ):
        problems.append(FieldViolation("audience.ad_account_id", "an ad account id (act_123)"))
    if values.tipo_sincronizacao == "evento" and values.evento_gatilho not in TRIGGERS:
        problems.append(FieldViolation("audience.evento_gatilho", "required for EVENTO"))
    if values.customer_file_source not in FILE_SOURCES:
        problems.append(FieldViolation("audience.customer_file_source", "; ".join(FILE_SOURCES)))
    if len(values.description) > 1000:
        problems.append(FieldViolation("audience.description", "at most 1000 characters"))
    if problems:
        raise InvalidArgument("invalid audience", problems)


async def create(
    deps: Deps, caller: Caller, values: AudienceInput, request_key: str | None
) -> CustomAudience:
    """Creates the audience at Meta and here, once per `request_key` (the caller and its
    request id; None without one).

    The row is written first ('creating'), then Meta creates the audience, then the row is
    completed with Meta's id and size. A retry after a failure past Meta's create finds the
    row without Meta's id and adopts the audience Meta holds under that name and description
    on the account, so Meta never gets a second one.
    """
    assert caller.tenant_id is not None
    validate(values, {"audience_name", "ad_account_id"})
    conn_id, token = await meta_token(deps, caller)
    api = client(deps)
    async with deps.breakers.guard("meta_audiences"):
        accounts = await call_meta(deps, caller.tenant_id, lambda: api.ad_accounts(token))
    account = next((a for a in accounts if a.id == values.ad_account_id), None)
    if account is None:
        raise AdAccountNotFound(f"the Meta connection cannot use {values.ad_account_id}")
    if not account.tos_accepted:
        raise TermsNotAccepted(
            f"accept the Custom Audience terms for {account.id} in Meta Ads Manager first"
        )
    row_id, retried = await _creating_row(deps, caller, conn_id, account.id, values, request_key)
    name, description = values.audience_name.strip(), values.description

    async def adopted() -> str | None:
        return await _adoptable(deps, caller, api, token, account.id, name, description)

    async def made() -> str:
        return await api.create(
            token,
            account.id,
            name=name,
            description=description,
            source=values.customer_file_source,
        )

    try:
        async with deps.breakers.guard("meta_audiences"):
            audience_id = await call_meta(deps, caller.tenant_id, adopted) if retried else None
            if audience_id is None:
                audience_id = await call_meta(deps, caller.tenant_id, made)
            size = await call_meta(deps, caller.tenant_id, lambda: api.size(token, audience_id))
    except ProviderPermissionDenied as exc:
        raise TermsNotAccepted(str(exc)) from exc
    async with deps.db.unit_of_work(caller) as session:
        row = await session.get_one(CustomAudience, row_id, with_for_update=True)
        if row.estado != "ready":
            row.estado, row.audience_id = "ready", audience_id
            row.approximate_count_lower_bound = size.lower
            row.approximate_count_upper_bound = size.upper
            await session.flush()
            await record_audit(
                session,
                caller,
                "audience.created",
                entity_type="custom_audiences_meta",
                entity_id=row.id,
                details={"audience_id": audience_id, "ad_account_id": account.id},
            )
        await session.refresh(row)
        return row


async def _creating_row(
    deps: Deps,
    caller: Caller,
    conn_id: uuid.UUID,
    account_id: str,
    values: AudienceInput,
    request_key: str | None,
) -> tuple[uuid.UUID, bool]:
    """The request's row, written 'creating' on the first attempt; True when it already was."""
    assert caller.tenant_id is not None
    async with deps.db.unit_of_work(caller) as session:
        inserted = await session.scalar(
            insert(CustomAudience)
            .values(
                organizacao_id=caller.tenant_id,
                conexao_meta_id=conn_id,
                audience_id=None,
                estado="creating",
                chave_criacao=request_key,
                audience_name=values.audience_name.strip(),
                description=values.description or None,
                ad_account_id=account_id,
                tipo_sincronizacao=values.tipo_sincronizacao,
                evento_gatilho=values.evento_gatilho,
                ativo=values.ativo,
                customer_file_source=values.customer_file_source,
            )
            .on_conflict_do_nothing(
                index_elements=["organizacao_id", "chave_criacao"],
                index_where=text("chave_criacao IS NOT NULL"),
            )
            .returning(CustomAudience.id)
        )
        if inserted is not None:
            return inserted, False
        found = await session.scalar(
            select(CustomAudience.id).where(CustomAudience.chave_criacao == request_key)
        )
        assert found is not None
        return found, True


async def _adoptable(
    deps: Deps,
    caller: Caller,
    api: MetaAudiencesClient,
    token: str,
    account_id: str,
    name: str,
    description: str,
) -> str | None:
    """Meta's audience made by an earlier attempt: same name and description on the account,
    and not already one of ours (the newest such, as Meta lists oldest first)."""
    listed = await api.audiences(token, account_id)
    async with deps.db.unit_of_work(caller) as session:
        ours = set(
            await session.scalars(
                select(CustomAudience.audience_id).where(CustomAudience.audience_id.is_not(None))
            )
        )
    matching = [
        a.id for a in listed if a.name == name and a.description == description and a.id not in ours
    ]
    return matching[-1] if matching else None


async def get(session: AsyncSession, audience_id: str) -> CustomAudience:
    try:
        key = uuid.UUID(audience_id)
    except ValueError as exc:
        raise InvalidArgument.field("id", "not a uuid") from exc
    row = await session.scalar(
        select(CustomAudience).where(
            CustomAudience.id == key,
            CustomAudience.deletado_em.is_(None),
            CustomAudience.estado == "ready",
        )
    )
    if row is None:
        raise AudienceNotFound(f"no audience {audience_id}")
    return row


def ready_id(row: CustomAudience) -> str:
    """Meta's id of an audience `get` found (only ready ones have one)."""
    assert row.audience_id is not None, "an audience still being created"
    return row.audience_id


async def pending_counts(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        select(CustomAudienceMember.audience_id, func.count())
        .where(
            CustomAudienceMember.audience_id.in_(ids),
            CustomAudienceMember.sincronizado.is_not(True),
        )
        .group_by(CustomAudienceMember.audience_id)
    )
    return {a: int(n) for a, n in rows}


async def update(
    deps: Deps, caller: Caller, audience_id: str, values: AudienceInput, paths: set[str]
) -> CustomAudience:
    assert caller.tenant_id is not None
    for path in paths - WRITABLE:
        raise InvalidArgument.field("update_mask", f"{path!r} cannot be changed")
    async with deps.db.unit_of_work(caller) as session:
        row = await get(session, audience_id)
        merged = AudienceInput(
            audience_name=values.audience_name if "audience_name" in paths else row.audience_name,
            description=values.description if "description" in paths else row.description or "",
            ad_account_id=row.ad_account_id,
            tipo_sincronizacao=(
                values.tipo_sincronizacao
                if "tipo_sincronizacao" in paths
                else row.tipo_sincronizacao
            ),
            evento_gatilho=values.evento_gatilho
            if "evento_gatilho" in paths
            else row.evento_gatilho,
            ativo=values.ativo if "ativo" in paths else row.ativo is not False,
            customer_file_source=row.customer_file_source,
        )
        validate(merged, paths)
        renamed = (merged.audience_name, merged.description) != (
            row.audience_name,
            row.description or "",
        )
        meta_id = ready_id(row)
    if renamed:
        _, token = await meta_token(deps, caller)

        async def rename() -> None:
            await client(deps).rename(
                token, meta_id, name=merged.audience_name, description=merged.description
            )

        async with deps.breakers.guard("meta_audiences"):
            await call_meta(deps, caller.tenant_id, rename)
    async with deps.db.unit_of_work(caller) as session:
        row = await get(session, audience_id)
        row.audience_name = merged.audience_name.strip()
        row.description = merged.description or None
        row.tipo_sincronizacao = merged.tipo_sincronizacao
        row.evento_gatilho = merged.evento_gatilho
        row.ativo = merged.ativo
        await session.flush()
        await record_audit(
            session,
            caller,
            "audience.updated",
            entity_type="custom_audiences_meta",
            entity_id=row.id,
            details={"fields": sorted(paths), "renamed_at_meta": renamed},
        )
        await session.refresh(row)
        return row


async def delete(
    session: AsyncSession, tenant_id: uuid.UUID, row: CustomAudience, at_meta: bool
) -> None:
    """Soft delete here; at Meta (when asked) as a job, so an outage loses nothing."""
    row.deletado_em = func.now()
    row.ativo = False
    if at_meta:
        meta_id = ready_id(row)
        await enqueue(
            session,
            tenant_id=tenant_id,
            operation=AUDIENCE_DELETE,
            payload={"audience_id": str(row.id), "meta_audience_id": meta_id},
            idempotency_key=f"audience-delete:{row.id}",
            destino=meta_id,
        )
