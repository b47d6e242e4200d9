"""How a session row moves when WAHA reports a status, and how every change is announced.

Used by the webhook handler, the health check and the RPCs alike, so a status means the same
thing whichever way we learned it. `announce` publishes inside the caller's transaction: the
event leaves (to every replica, through NOTIFY) only if the change commits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User, WhatsAppSession
from server.events import Event, publish
from server.outbox import record_change
from server.outbox.payloads import connection_changed
from server.providers.waha import WahaMe
from server.whatsapp import status as st
from server.whatsapp.connection import EVENT_KIND, VERSION_KEY
from server.whatsapp.views import phone_of_chat, session_json, session_proto


@dataclass(frozen=True)
class Outcome:
    """What applying a WAHA status did.

    Attributes:
        change: "status", "qr" (a new QR to fetch), "phone" (number learned) or None (nothing).
        stop_session: too many QR rotations: WAHA must stop the session.
        dropped: the session was connected and no longer is (its owner is alerted).
    """

    change: str | None
    stop_session: bool = False
    dropped: bool = False


def apply_status(
    row: WhatsAppSession,
    waha_status: str,
    *,
    me: WahaMe | None,
    now: dt.datetime,
    max_qr_rotations: int,
    issued_at: dt.datetime | None = None,
) -> Outcome:
    """Move `row` to what `waha_status` means. Late events after a deliberate end are ignored."""
    if row.status in (st.DISCONNECTED, st.FAILED) and row.motivo_desconexao in st.DELIBERATE:
        return Outcome(None)
    before = (row.status, row.phone_number, row.phone_name)
    was_connected = row.status == st.CONNECTED
    row.waha_status = waha_status
    new = st.ours(waha_status)
    change = "status"
    stop = False
    if waha_status == "SCAN_QR_CODE":
        # Each SCAN_QR_CODE is a new QR (WAHA re-emits it on every rotation).
        row.qr_rotacoes = (row.qr_rotacoes or 0) + 1
        # The QR's life counts from when WAHA issued it (the event's time), not from when
        # its webhook reached us; never from the future of our clock.
        row.ultimo_qr_gerado = min(issued_at, now) if issued_at else now
        change = "qr"
        if was_connected:
            # Straight from WORKING to a QR: the device was unlinked on the phone (WhatsApp >
            # Linked devices > Log out); WAHA lost the auth and restarted for a new QR.
            row.motivo_desconexao = st.LOGGED_OUT_FROM_PHONE
            row.ultimo_erro = st.UNLINKED_MESSAGE
            row.desconectado_em = now
            row.qr_rotacoes = 1
            change = "status"
        elif row.qr_rotacoes > max_qr_rotations:
            new, stop = st.FAILED, True
            row.motivo_desconexao = st.QR_TIMEOUT
            row.ultimo_erro = f"qr_expired: no scan after {max_qr_rotations} QR codes"
            row.desconectado_em = now
            change = "status"
    elif new == st.CONNECTED:
        phone = phone_of_chat(me.id) if me else None
        if phone:
            row.phone_number = phone
        if me and me.push_name:
            row.phone_name = me.push_name
        if not was_connected:
            row.conectado_em = now
        row.qr_rotacoes = 0
        row.motivo_desconexao = None
        row.ultimo_erro = None
        if (row.phone_number, row.phone_name) != before[1:]:
            change = "phone"
    elif new in (st.FAILED, st.DISCONNECTED):
        row.motivo_desconexao = row.motivo_desconexao or st.SESSION_FAILED
        if new == st.FAILED:
            row.ultimo_erro = f"WAHA reported {waha_status}"
        if was_connected or row.desconectado_em is None:
            row.desconectado_em = now
    row.status = new
    if change == "status" and (row.status, row.phone_number, row.phone_name) == before:
        return Outcome(None)
    dropped = was_connected and new in (st.FAILED, st.DISCONNECTED, st.QR_PENDING)
    return Outcome(change, stop_session=stop, dropped=dropped)


async def announce(
    tx: AsyncSession, row: WhatsAppSession, change: str, **extra: Any
) -> dict[str, Any]:
    """Publish the row's full state as a WHATSAPP_STATUS event in `tx`; returns the data."""
    await tx.flush()
    await tx.refresh(row)
    owner = await tx.scalar(select(User.nome).where(User.id == row.usuario_id))
    data: dict[str, Any] = {
        **session_json(session_proto(row, owner or "")),
        "change": change,
        # Per-row ordered stamp (see migration 0005): streams drop events older than it.
        VERSION_KEY: row.atualizado_em.isoformat(),
        **extra,
    }
    await publish(tx, Event(EVENT_KIND, row.organizacao_id, row.usuario_id, data))
    if change in ("status", "phone"):
        # Status transitions and the number connected (not QR rotations) are changes the CRM
        # core learns.
        await record_change(
            tx,
            row.organizacao_id,
            "CONNECTION_CHANGED",
            connection_changed(
                "WHATSAPP",
                row.id,
                row.status,
                requires_reconnect=row.status in (st.FAILED, st.DISCONNECTED),
            ),
            user_id=row.usuario_id,
        )
    return data
