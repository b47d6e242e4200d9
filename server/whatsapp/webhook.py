"""The "waha_event" job: one verified WAHA webhook (stored by the ingress) processed.

The ingress verified the HMAC, resolved the tenant from the session name and stored the raw
request in `webhook_inbox`; this reads it back in the tenant's unit of work, checks the
envelope's metadata against our record, and applies it. The inbox row is marked processed
in the same transaction, so a job run twice changes nothing the second time. A person's
message takes the plain path of received.py; the rest, and that path's exceptions, come here.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import WebhookInbox, WhatsAppSession
from server.audit import record_audit
from server.auth.caller import Caller, Role
from server.providers.waha import WahaMe
from server.resilience.alerts import raise_alert, resolve_alerts
from server.resilience.jobs import Job
from server.whatsapp import status as st
from server.whatsapp.cleanup import enqueue_cleanup
from server.whatsapp.envelope import Envelope, metadata_mismatch
from server.whatsapp.inbound import apply_ack, store_message
from server.whatsapp.lifecycle import Outcome, announce, apply_status
from server.whatsapp.received import store_received
from server.whatsapp.recovery import RELINKING, RESTARTING, UNLINKED, on_failed

if TYPE_CHECKING:
    from server.bootstrap import Deps

_log = logging.getLogger(__name__)


async def handle(deps: Deps, job: Job) -> None:
    if await store_received(deps, job):  # a person's message: the plain path (received.py)
        return
    caller = Caller(role=Role.SERVICE, tenant_id=job.tenant_id)
    inbox_id = uuid.UUID(str(job.payload["inbox_id"]))
    async with deps.db.unit_of_work(caller) as tx:
        inbox, row = await _inbox_and_session(tx, inbox_id, job.payload.get("session"))
        if inbox is None or inbox.processed_at is not None:
            return
        inbox.processed_at = deps.clock.now()
        envelope = Envelope.parse(bytes(inbox.body))
        if envelope is None:
            await _reject(tx, caller, inbox_id, "unparsable", None)
            return
        if row is None or row.session_name != envelope.session:
            row = await tx.scalar(_live_session(envelope.session).with_for_update())
        if row is None:
            await _reject(tx, caller, inbox_id, "unknown_session", envelope)
            return
        mismatch = metadata_mismatch(
            envelope, {"organizacao_id": row.organizacao_id, "usuario_id": row.usuario_id}
        )
        if mismatch is not None:
            await _reject(tx, caller, inbox_id, f"metadata_{mismatch}_mismatch", envelope)
            return
        await _apply(deps, tx, row, envelope)


def _live_session(name: str) -> Select[WhatsAppSession]:
    return select(WhatsAppSession).where(
        WhatsAppSession.session_name == name, WhatsAppSession.deletado_em.is_(None)
    )


async def _inbox_and_session(
    tx: AsyncSession, inbox_id: uuid.UUID, session_name: object
) -> tuple[WebhookInbox | None, WhatsAppSession | None]:
    """The inbox row and the session the ingress resolved it to, both locked, in one round
    trip; the inbox row alone when the session is gone (the caller looks again by the name
    the stored envelope gives, which is the one that counts)."""
    if isinstance(session_name, str) and session_name:
        both = (
            await tx.execute(
                select(WebhookInbox, WhatsAppSession)
                .join(
                    WhatsAppSession,
                    (WhatsAppSession.session_name == session_name)
                    & WhatsAppSession.deletado_em.is_(None),
                )
                .where(WebhookInbox.id == inbox_id)
                .with_for_update()
            )
        ).first()
        if both is not None:
            return both[0], both[1]
    return await tx.get(WebhookInbox, inbox_id, with_for_update=True), None


async def _apply(deps: Deps, tx: AsyncSession, row: WhatsAppSession, envelope: Envelope) -> None:
    event, payload = envelope.event, envelope.payload
    if event == "session.status":
        await apply_session_status(
            deps,
            tx,
            row,
            str(payload.get("status") or ""),
            me=envelope.me,
            at=envelope.at(deps.clock.now()),
        )
    elif event in ("message", "message.any"):
        await store_message(tx, row, payload, via_any=event == "message.any")
    elif event == "message.ack":
        await apply_ack(tx, row, payload)
    else:
        _log.info("ignoring WAHA event %s", event)  # we subscribe to four; others are noise


async def apply_session_status(
    deps: Deps,
    tx: AsyncSession,
    row: WhatsAppSession,
    waha_status: str,
    *,
    me: WahaMe | None,
    at: dt.datetime,
) -> Outcome:
    """Apply a WAHA status (webhook or health check) to a locked row, with its consequences."""
    stale = row.waha_status_em is not None and at < row.waha_status_em
    # WAHA does not guarantee order: an older status is stale, except a QR rotation while
    # waiting for a scan, which still counts toward the rotation limit.
    if not waha_status or (
        stale and not (waha_status == "SCAN_QR_CODE" and row.status == st.QR_PENDING)
    ):
        return Outcome(None)
    if not stale:
        row.waha_status_em = at
    before, previous_error = row.status, row.ultimo_erro
    outcome = apply_status(
        row,
        waha_status,
        me=me,
        now=deps.clock.now(),
        max_qr_rotations=deps.settings.whatsapp_max_qr_rotations,
        issued_at=at,
    )
    if outcome.change is None:
        return outcome
    await announce(tx, row, outcome.change, waha_status=waha_status)
    if outcome.change == "status":
        # Changes nobody asked for (connected, dropped, recovered) are audited like requests.
        await record_audit(
            tx,
            Caller(role=Role.SERVICE, tenant_id=row.organizacao_id),
            "whatsapp.status_changed",
            entity_type="sessoes_whatsapp",
            entity_id=row.id,
            details={
                "de": before,
                "para": row.status,
                "waha_status": waha_status,
                "motivo_desconexao": row.motivo_desconexao,
            },
        )
    if outcome.stop_session:
        await enqueue_cleanup(tx, row, ("stop",))
    if waha_status == "FAILED":
        await on_failed(tx, row, previous_error, deps.clock.now())
    elif waha_status == "SCAN_QR_CODE" and previous_error == RESTARTING:
        # FAILED, restarted, and WAHA asks for a QR: the auth is gone, the device was
        # logged out on the phone.
        row.motivo_desconexao = st.LOGGED_OUT_FROM_PHONE
        row.ultimo_erro = UNLINKED
    elif waha_status == "SCAN_QR_CODE" and previous_error == RELINKING:
        row.ultimo_erro = RELINKING  # the final state: waiting for the owner's new scan
    if outcome.dropped:
        await raise_alert(
            tx,
            tenant_id=row.organizacao_id,
            audience="tenant_admin",
            usuario_id=row.usuario_id,
            kind="connection_lost",
            severity="warning",
            message=f"WhatsApp desconectado ({row.motivo_desconexao or waha_status}): "
            "conecte novamente",
            details={
                "titulo": "WhatsApp desconectado",
                "entidade_tipo": "sessoes_whatsapp",
                "entidade_id": str(row.id),
                "connection_type": "WHATSAPP",
            },
            dedupe=True,
        )
    elif row.status == st.CONNECTED:
        await resolve_alerts(
            tx,
            tenant_id=row.organizacao_id,
            kind="connection_lost",
            at=deps.clock.now(),
            entidade_id=str(row.id),
        )
    return outcome


async def _reject(
    tx: AsyncSession,
    caller: Caller,
    inbox_id: uuid.UUID,
    why: str,
    envelope: Envelope | None,
) -> None:
    await record_audit(
        tx,
        caller,
        "whatsapp.webhook_rejected",
        entity_type="webhook_inbox",
        entity_id=inbox_id,
        details={
            "reason": why,
            "session": envelope.session if envelope else None,
            "event": envelope.event if envelope else None,
        },
    )
