"""The caller's WhatsApp session: start, QR, pairing code, status, disconnect, admin list.

WAHA is called outside the database transaction where the row must exist first (webhooks
for a brand-new session resolve the tenant through it), and inside a breaker guard, so an
outage is reported as UNAVAILABLE/CIRCUIT_OPEN rather than a hang.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from db.models import User, WhatsAppSession
from server.audit import record_audit
from server.auth.caller import Caller
from server.errors import (
    ConnectionNotFound,
    FailedPrecondition,
    InvalidArgument,
)
from server.paging import keyset_after, keyset_page, page_size
from server.providers.errors import ProviderError
from server.providers.waha import (
    WEBHOOK_EVENTS,
    WahaClient,
    WahaSession,
    config_matches,
    is_not_found,
    session_config,
)
from server.whatsapp import status as st
from server.whatsapp.cleanup import enqueue_cleanup
from server.whatsapp.connection import own_row, session_name, waha, webhook_url
from server.whatsapp.errors import SessionNotPending
from server.whatsapp.lifecycle import announce
from server.whatsapp.views import RowView, SessionRow, e164

if TYPE_CHECKING:
    from server.bootstrap import Deps


@dataclass(frozen=True)
class Started:
    id: uuid.UUID
    session_name: str
    connected: bool


@dataclass(frozen=True)
class QrCode:
    png: bytes
    mimetype: str
    value: str
    generated_at: dt.datetime
    expires_in: int


@dataclass(frozen=True)
class SessionPage:
    rows: list[tuple[WhatsAppSession, str]]  # each session with its owner's name
    next_page_token: str
    total_size: int


async def _ensure_started(
    deps: Deps, client: WahaClient, name: str, config: dict[str, object]
) -> WahaSession:
    async with deps.breakers.guard("waha"):
        try:
            current = await client.get_session(name)
        except ProviderError as exc:
            if not is_not_found(exc):
                raise
            return await client.create_session(name, config, start=True)
        if not config_matches(current, config):
            current = await client.update_session(name, config)
        if current.status in ("STOPPED", "FAILED"):
            # docs/providers.md, WAHA: a FAILED session is restarted.
            current = await client.restart(name)
        return current


async def _round_failed(deps: Deps, caller: Caller, exc: Exception) -> None:
    async with deps.db.unit_of_work(caller) as tx:
        row = await own_row(tx, caller, lock=True)
        if row is None or row.status != st.QR_PENDING:
            return
        row.status = st.FAILED
        row.ultimo_erro = str(exc)[:500]
        await announce(tx, row, "status")


async def start(deps: Deps, caller: Caller) -> Started:
    tenant, user = caller.require_tenant(), caller.require_user()
    client = await waha(deps)
    name = session_name(tenant, user)
    url = webhook_url(deps, tenant)
    async with deps.db.unit_of_work(caller) as tx:
        # The row exists before WAHA does, so the first webhooks find their tenant.
        await tx.execute(
            insert(WhatsAppSession)
            .values(organizacao_id=tenant, usuario_id=user, session_name=name, status=st.QR_PENDING)
            .on_conflict_do_update(
                index_elements=["organizacao_id", "usuario_id"],
                # A new round: reset before WAHA is called, so webhooks of this round
                # (processed concurrently by a worker) are never undone below.
                set_={
                    "session_name": name,
                    "deletado_em": None,
                    "qr_rotacoes": 0,
                    "motivo_desconexao": None,
                    "ultimo_erro": None,
                    "waha_status_em": None,
                },
            )
        )
    config = session_config(
        metadata={"organizacao_id": str(tenant), "usuario_id": str(user)},
        webhook_url=url,
        hmac_key=client.credentials.webhook_hmac_key,
    )
    try:
        current = await _ensure_started(deps, client, name, config)
    except Exception as exc:
        # WAHA never took this round: say so instead of leaving a QR that will never come.
        await _round_failed(deps, caller, exc)
        raise
    connected = current.status == "WORKING"
    async with deps.db.unit_of_work(caller) as tx:
        row = await own_row(tx, caller, lock=True)
        assert row is not None  # inserted above; RLS lets the owner see it
        row.webhook_url = url
        row.webhook_events = list(WEBHOOK_EVENTS)
        if connected:
            row.status = st.CONNECTED
        elif row.status in (st.DISCONNECTED, st.FAILED, st.CONNECTED):
            # Webhooks may already have moved it (connecting, qr_pending): those stand.
            row.status = st.QR_PENDING
        await announce(tx, row, "status")
        await record_audit(
            tx,
            caller,
            "whatsapp.session_started",
            entity_type="sessoes_whatsapp",
            entity_id=row.id,
            details={"session_name": name, "waha_status": current.status},
        )
        return Started(row.id, name, connected)


async def _pending_row(deps: Deps, caller: Caller) -> WhatsAppSession:
    async with deps.db.unit_of_work(caller) as tx:
        row = await own_row(tx, caller)
    if row is None:
        raise ConnectionNotFound("no WhatsApp session: start one first")
    if row.status == st.CONNECTED:
        raise SessionNotPending("the session is already connected")
    if row.status == st.DISCONNECTED and row.motivo_desconexao in st.DELIBERATE:
        raise SessionNotPending("the session was disconnected: start it again")
    return row


async def qr_code(deps: Deps, caller: Caller, *, regenerate: bool) -> QrCode:
    row = await _pending_row(deps, caller)
    client = await waha(deps)
    restart = regenerate or row.status == st.FAILED
    async with deps.breakers.guard("waha"):
        if restart:
            await client.restart(row.session_name)
        qr = await client.qr(row.session_name)
    now = deps.clock.now()
    async with deps.db.unit_of_work(caller) as tx:
        fresh = await own_row(tx, caller, lock=True)
        if fresh is None:
            raise ConnectionNotFound("the WhatsApp session was removed")
        if restart:
            # A new round of QR codes: the rotation budget starts over.
            fresh.qr_rotacoes, fresh.motivo_desconexao, fresh.ultimo_erro = 0, None, None
            fresh.ultimo_qr_gerado = now
        fresh.ultimo_qr_gerado = fresh.ultimo_qr_gerado or now
        if restart or fresh.status != st.QR_PENDING:
            fresh.status = st.QR_PENDING  # WAHA just handed out a QR: it is waiting for a scan
            await announce(tx, fresh, "qr")
        generated = fresh.ultimo_qr_gerado or now
    ttl = deps.settings.whatsapp_qr_ttl_seconds
    age = max(0.0, (now - generated).total_seconds())
    return QrCode(
        png=qr.png,
        mimetype=qr.mimetype,
        value=qr.value,
        generated_at=generated,
        expires_in=max(1, int(ttl - age)) if age < ttl else ttl,
    )


async def pairing_code(deps: Deps, caller: Caller, phone_number: str) -> str:
    """A pairing code for `phone_number` (E.164), valid as long as a QR code."""
    phone = e164(phone_number, "phone_number") if phone_number else ""
    if not phone:
        raise InvalidArgument.field("phone_number", "required, E.164 (+5511999999999)")
    row = await _pending_row(deps, caller)
    client = await waha(deps)
    async with deps.breakers.guard("waha"):
        code = await client.request_code(row.session_name, phone.lstrip("+"))
    async with deps.db.unit_of_work(caller) as tx:
        await record_audit(
            tx,
            caller,
            "whatsapp.pairing_code_requested",
            entity_type="sessoes_whatsapp",
            entity_id=row.id,
            details={"phone_number": phone},
        )
    return code


async def get_status(deps: Deps, caller: Caller) -> tuple[SessionRow | None, str]:
    """The caller's live session (or None: never started) and its owner's name."""
    # A hot read in one round trip (db.uow.Database.fetchrow_as): the caller's session with its
    # owner's name, read under the caller's row-level security by one function call.
    found = await deps.db.fetchrow_as(caller, _STATUS_CALL, caller.require_user())
    if found is None:
        return None, ""
    return RowView(found["sessao"]), found["owner_name"] or ""


_STATUS_CALL = "SELECT sessao, owner_name FROM as_caller_whatsapp_status($1, $2, $3, $4)"


async def disconnect(deps: Deps, caller: Caller, usuario_id: str) -> tuple[WhatsAppSession, str]:
    """Disconnects the session of `usuario_id` (default: the caller's); returns it with its
    owner's name."""
    async with deps.db.unit_of_work(caller) as tx:
        row = await own_row(tx, caller, usuario_id)
        if row is None:
            raise ConnectionNotFound("no WhatsApp session for this user")
    cleanup_error: str | None = None
    if not (row.status == st.DISCONNECTED and row.motivo_desconexao in st.DELIBERATE):
        try:
            client = await waha(deps)
            async with deps.breakers.guard("waha"):
                await _logout_and_delete(client, row.session_name)
        except (ProviderError, FailedPrecondition) as exc:
            # spec: a WAHA outage does not fail the call; the cleanup becomes a job.
            cleanup_error = type(exc).__name__
    by_admin = row.usuario_id != caller.user_id
    async with deps.db.unit_of_work(caller) as tx:
        fresh = await tx.get(WhatsAppSession, row.id, with_for_update=True)
        if fresh is None:
            raise ConnectionNotFound("the WhatsApp session was removed")
        if fresh.status != st.DISCONNECTED or fresh.motivo_desconexao not in st.DELIBERATE:
            fresh.status = st.DISCONNECTED
            fresh.motivo_desconexao = st.ADMIN_LOGOUT if by_admin else st.USER_LOGOUT
            fresh.desconectado_em = deps.clock.now()
            fresh.qr_rotacoes = 0
            await announce(tx, fresh, "status")
            await record_audit(
                tx,
                caller,
                "whatsapp.session_disconnected",
                entity_type="sessoes_whatsapp",
                entity_id=fresh.id,
                details={
                    "usuario_id": str(fresh.usuario_id),
                    "reason": fresh.motivo_desconexao,
                    "waha_cleanup": "queued" if cleanup_error else "done",
                },
            )
            if cleanup_error:
                await enqueue_cleanup(tx, fresh, ("logout", "delete"))
        owner = await tx.scalar(select(User.nome).where(User.id == fresh.usuario_id))
        return fresh, owner or ""


async def _logout_and_delete(client: WahaClient, name: str) -> None:
    """Spec 1.2 step 5: logout, then delete. Either may find the session already gone."""
    for call in (client.logout, client.delete):
        try:
            await call(name)
        except ProviderError as exc:
            if not is_not_found(exc):
                raise


async def list_sessions(
    deps: Deps, caller: Caller, *, status: str | None, size: int, token: str
) -> SessionPage:
    """The tenant's live sessions by owner name (admins), optionally in one status."""
    size = min(page_size(size), 200)
    base = (
        select(WhatsAppSession, User.nome)
        .join(User, User.id == WhatsAppSession.usuario_id)
        .where(WhatsAppSession.deletado_em.is_(None))
    )
    if status is not None:
        base = base.where(WhatsAppSession.status == status)
    query = base.order_by(User.nome, WhatsAppSession.id)
    after = keyset_after(
        token,
        (("nome", "text"), ("id", "uuid")),
        (User.nome, WhatsAppSession.id),
        descending=False,
    )
    if after is not None:
        query = query.where(after)
    async with deps.db.unit_of_work(caller) as tx:
        rows = (await tx.execute(query.limit(size + 1))).all()
        total = await tx.scalar(select(func.count()).select_from(base.subquery()))
    page, next_token = keyset_page(rows, size, lambda r: {"nome": r[1], "id": str(r[0].id)})
    return SessionPage([(r, nome) for r, nome in page], next_token, total or 0)
