"""AIP-155 request ids: a mutating RPC repeated with the same id returns the first response.

``claim`` runs inside the RPC's own unit of work: the insert takes the slot, so a concurrent
repeat waits on the unique index until the first commits, then replays its response.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import IdempotencyRecord
from server.errors import InvalidArgument

M = TypeVar("M", bound=Message)


def _digest(request: Message) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


async def claim(
    session: AsyncSession,
    tenant_id: uuid.UUID | None,
    rpc: str,
    request: Message,
    response_type: type[M],
) -> M | None:
    """Takes the request id's slot; returns the earlier response when it was taken before."""
    request_id = getattr(request, "request_id", "")
    if not request_id:
        return None
    if len(request_id) > 100:
        raise InvalidArgument.field("request_id", "at most 100 characters")
    digest = _digest(request)
    inserted = await session.scalar(
        insert(IdempotencyRecord)
        .values(organizacao_id=tenant_id, rpc=rpc, request_id=request_id, request_hash=digest)
        .on_conflict_do_nothing()
        .returning(IdempotencyRecord.id)
    )
    if inserted is not None:
        return None
    prior = (
        await session.execute(
            select(IdempotencyRecord.request_hash, IdempotencyRecord.response).where(
                IdempotencyRecord.organizacao_id.is_not_distinct_from(tenant_id),
                IdempotencyRecord.rpc == rpc,
                IdempotencyRecord.request_id == request_id,
            )
        )
    ).one()
    if prior.request_hash != digest:
        raise InvalidArgument.field("request_id", "already used for a different request")
    if prior.response is None:
        # Claimed but never answered: an RPC that commits its claim before a provider call
        # which then failed. Replaying would answer an empty success; run the request again.
        return None
    return response_type.FromString(prior.response)


async def remember(
    session: AsyncSession, tenant_id: uuid.UUID | None, rpc: str, request: Message, response: M
) -> M:
    request_id = getattr(request, "request_id", "")
    if request_id:
        await session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.organizacao_id.is_not_distinct_from(tenant_id),
                IdempotencyRecord.rpc == rpc,
                IdempotencyRecord.request_id == request_id,
            )
            .values(response=response.SerializeToString())
        )
    return response
