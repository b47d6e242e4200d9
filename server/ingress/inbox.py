"""The webhook inbox: resolve the recipient from our records, store each verified event and
enqueue its processing job in one transaction per tenant, audit what is turned away.

The inbox row and the job commit together: a crash between them is impossible, and a provider's
retry of an event already stored finds the row (ON CONFLICT DO NOTHING) and enqueues nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb
from sqlalchemy import ColumnElement, String, cast, func, literal, select, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from db.models import PendingEvent, WebhookInbox
from db.uow import Database, caller_args
from server.audit import record_audit
from server.auth.caller import Caller, Role
from server.ingress.routes import InboundEvent, ProviderRoute
from server.observability.jobs import enqueue_context
from server.resilience.jobs import JOB_KEY, job_values

# Not kept with the stored delivery: credentials a proxy or provider may attach. The MAC
# headers stay (they are not secrets and show what was verified).
_DROPPED_HEADERS = frozenset(
    {"authorization", "cookie", "proxy-authorization", "x-api-key", "x-goog-channel-token"}
)
_SERVICE = Caller(role=Role.SERVICE)


@dataclass(frozen=True)
class Recipient:
    """Whose event it is, per our records (a resolver row)."""

    tenant_id: uuid.UUID
    ids: Mapping[str, str]


@dataclass(frozen=True)
class Stored:
    event: InboundEvent
    inbox_id: uuid.UUID | None  # None: a duplicate, already stored earlier
    tenant_id: uuid.UUID | None

    @property
    def duplicate(self) -> bool:
        return self.inbox_id is None


def stored_headers(request: pb.RawHttpRequest) -> dict[str, str]:
    headers: dict[str, str] = {}
    for h in request.headers:
        name = h.name.lower()
        if name in _DROPPED_HEADERS:
            continue
        headers[name] = f"{headers[name]}, {h.value}" if name in headers else h.value
    return headers


def stored_query(request: pb.RawHttpRequest) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for q in request.query:
        query.setdefault(q.name, []).append(q.value)
    return query


class Inbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def resolve(self, route: ProviderRoute, lookup: str) -> list[Recipient]:
        """Every tenant whose records name `lookup` (a session, page, account or channel)."""
        async with self._db.unit_of_work(_SERVICE) as session:
            return await _resolve(session, route, lookup)

    async def accept(
        self,
        route: ProviderRoute,
        tenant_id: uuid.UUID,
        events: Sequence[tuple[InboundEvent, Recipient]],
        request: pb.RawHttpRequest,
        *,
        per_tenant_ids: bool = False,
    ) -> list[Stored]:
        """Stores and enqueues `events` of one tenant in one transaction.

        Args:
            per_tenant_ids: the recipient is shared by several tenants (one Facebook page
                serving two organizations): each keeps its own row, keyed `<id>@<tenant>`.
        """
        caller = Caller(role=Role.SERVICE, tenant_id=tenant_id)
        async with self._db.unit_of_work(caller) as session:
            return await _accept(
                session, route, tenant_id, events, request, per_tenant_ids=per_tenant_ids
            )

    async def resolve_and_accept(
        self,
        route: ProviderRoute,
        event: InboundEvent,
        choose: Callable[[list[Recipient]], tuple[Recipient | None, str]],
        request: pb.RawHttpRequest,
    ) -> tuple[Stored | None, str]:
        """`resolve` then `accept` of one event in two round trips: the lookup (the resolver
        is a definer function), then the inbox row and its job, written as the chosen
        recipient's tenant in one transaction.

        Args:
            choose: picks the recipient from what the records name, or refuses with the
                audit action to record (the caller audits; nothing is stored then).
        Returns:
            (what was stored, "") or (None, the refusal's action).
        """
        # Two statements on one pooled connection, no ORM: the lookup, then one function call
        # that is its own transaction (as_caller_accept_webhook, migration 0025).
        async with self._db.autocommit() as pg:
            with self._db.statement_span("SELECT"):
                rows = await pg.fetch(_resolver_query(route), event.lookup)
            recipient, refusal = choose([_recipient(route, row) for row in rows])
            if recipient is None:
                return None, refusal
            tenant_id = recipient.tenant_id
            # Built outside the statement's span: the job continues the call's trace.
            args = (
                *caller_args(Caller(role=Role.SERVICE, tenant_id=tenant_id)),
                *_accept_args(route, event, recipient, request),
            )
            with self._db.statement_span("SELECT"):
                inbox_id: uuid.UUID | None = await pg.fetchval(_ACCEPT_CALL, *args)
        return Stored(event, inbox_id, tenant_id), ""

    async def reject_unknown(
        self,
        route: ProviderRoute,
        events: Iterable[InboundEvent],
        request: pb.RawHttpRequest,
    ) -> list[Stored]:
        """Keeps deliveries for recipients we do not know (verdict rejected, no tenant, no job)
        with one platform-level audit entry, so an operator can see what was turned away.
        """
        events = list(events)
        results: list[Stored] = []
        async with self._db.unit_of_work(_SERVICE) as session:
            for event in events:
                inbox_id = await _insert(session, route, None, event.event_id, request, "rejected")
                results.append(Stored(event, inbox_id, None))
            await _audit(
                session,
                route.unknown_action,
                route.provider,
                request,
                {"lookups": sorted({e.lookup for e in events}), "events": len(events)},
            )
        return results

    async def audit(
        self,
        action: str,
        provider: str,
        request: pb.RawHttpRequest,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """A platform-level audit entry for a delivery turned away (never its body or secrets)."""
        async with self._db.unit_of_work(_SERVICE) as session:
            await _audit(session, action, provider, request, details or {})

    async def channel_token(self, recipient: Recipient) -> str | None:
        """The stored (encrypted) token of a Google Calendar push channel, as stored."""
        caller = Caller(
            role=Role.SERVICE,
            tenant_id=recipient.tenant_id,
            user_id=uuid.UUID(recipient.ids["usuario_id"]),
        )
        async with self._db.unit_of_work(caller) as session:
            value: str | None = await session.scalar(
                text("SELECT channel_token_encrypted FROM conexoes_google WHERE id = :id"),
                {"id": uuid.UUID(recipient.ids["conexao_id"])},
            )
        return value


def _resolver_query(route: ProviderRoute) -> str:
    columns = ", ".join(("organizacao_id", *route.resolver_ids))
    # route.resolver is one of our constants (routes.py), never request input.
    return f"SELECT {columns} FROM {route.resolver}($1)"


def _recipient(route: ProviderRoute, row: Sequence[Any]) -> Recipient:
    return Recipient(
        tenant_id=row[0],
        ids={name: str(v) for name, v in zip(route.resolver_ids, row[1:], strict=True)},
    )


async def _resolve(session: AsyncSession, route: ProviderRoute, lookup: str) -> list[Recipient]:
    query = _resolver_query(route).replace("$1", ":lookup")
    rows = (await session.execute(text(query), {"lookup": lookup})).all()
    return [_recipient(route, row) for row in rows]


_ACCEPT_CALL = (
    "SELECT as_caller_accept_webhook($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
    " $14, $15)"
)


def _accept_args(
    route: ProviderRoute, event: InboundEvent, recipient: Recipient, request: pb.RawHttpRequest
) -> tuple[Any, ...]:
    """The parameters of as_caller_accept_webhook after the caller's: the inbox row as
    `_inbox_row` writes it and the job as `_insert_and_enqueue` enqueues it."""
    facts = {"provider": route.provider, "event_id": event.event_id, **event.facts, **recipient.ids}
    context = enqueue_context()
    received_at = (
        request.received_at.ToDatetime(tzinfo=dt.UTC) if request.HasField("received_at") else None
    )
    return (
        route.provider,
        event.event_id,
        json.dumps(stored_headers(request)),
        json.dumps(stored_query(request)),
        request.body,
        received_at,
        route.operation.name,
        json.dumps(facts),
        f"{route.provider}:{event.event_id}",
        route.operation.max_attempts,
        context["request_id"],
        context["traceparent"],
    )


async def _accept(
    session: AsyncSession,
    route: ProviderRoute,
    tenant_id: uuid.UUID,
    events: Sequence[tuple[InboundEvent, Recipient]],
    request: pb.RawHttpRequest,
    per_tenant_ids: bool = False,
) -> list[Stored]:
    """Inserts and enqueues inside a transaction already acting as `tenant_id`'s service."""
    results: list[Stored] = []
    for event, recipient in events:
        event_id = f"{event.event_id}@{tenant_id}" if per_tenant_ids else event.event_id
        inbox_id = await _insert_and_enqueue(
            session, route, tenant_id, event_id, event, recipient, request
        )
        results.append(Stored(event, inbox_id, tenant_id))
    return results


async def _insert_and_enqueue(
    session: AsyncSession,
    route: ProviderRoute,
    tenant_id: uuid.UUID,
    event_id: str,
    event: InboundEvent,
    recipient: Recipient,
    request: pb.RawHttpRequest,
) -> uuid.UUID | None:
    """The inbox row and its processing job in one statement (one round trip): the job is
    inserted from the inbox insert's RETURNING, so a duplicate delivery enqueues nothing."""
    inbox = _inbox_row(route, tenant_id, event_id, request, "accepted").cte("inbox")
    facts = {
        "provider": route.provider,
        "event_id": event.event_id,
        **event.facts,
        **recipient.ids,
    }
    payload = func.jsonb_build_object("inbox_id", cast(inbox.c.id, String)).op("||")(
        literal(facts, JSONB)
    )
    values = job_values(
        tenant_id=tenant_id,
        operation=route.operation,
        payload=payload,
        idempotency_key=f"{route.provider}:{event.event_id}",
    )
    job = (
        insert(PendingEvent)
        .from_select(
            list(values),
            select(
                *(v if isinstance(v, ColumnElement) else literal(v) for v in values.values())
            ).select_from(inbox),
            # The job's id comes from its column's server default (gen_random_uuid()).
            include_defaults=False,
        )
        .on_conflict_do_nothing(index_elements=JOB_KEY)
        .cte("job")
    )
    inserted: uuid.UUID | None = await session.scalar(select(inbox.c.id).add_cte(job))
    return inserted


async def _insert(
    session: AsyncSession,
    route: ProviderRoute,
    tenant_id: uuid.UUID | None,
    event_id: str,
    request: pb.RawHttpRequest,
    verdict: str,
) -> uuid.UUID | None:
    inserted: uuid.UUID | None = await session.scalar(
        _inbox_row(route, tenant_id, event_id, request, verdict)
    )
    return inserted


def _inbox_row(
    route: ProviderRoute,
    tenant_id: uuid.UUID | None,
    event_id: str,
    request: pb.RawHttpRequest,
    verdict: str,
) -> ReturningInsert[tuple[uuid.UUID]]:
    """The inbox insert, returning the new row's id (nothing for a delivery already stored)."""
    values: dict[str, Any] = {
        "organizacao_id": tenant_id,
        "provider": route.provider,
        "provider_event_id": event_id,
        "headers": stored_headers(request),
        "query": stored_query(request),
        "body": request.body,
        "verdict": verdict,
    }
    if request.HasField("received_at"):
        values["received_at"] = request.received_at.ToDatetime(tzinfo=dt.UTC)
    return (
        insert(WebhookInbox)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
        .returning(WebhookInbox.id)
    )


async def _audit(
    session: AsyncSession,
    action: str,
    provider: str,
    request: pb.RawHttpRequest,
    details: Mapping[str, Any],
) -> None:
    await record_audit(
        session,
        _SERVICE,
        action,
        entity_type="webhook",
        entity_id=provider,
        details={
            "provider": provider,
            "path": request.path,
            "remote_addr": request.remote_addr,
            **details,
        },
        tenant_id=None,
    )
