"""The QR's age counts from when WAHA issued it (the status event's time)."""

from __future__ import annotations

import datetime as dt

from db.models import WhatsAppSession
from server.whatsapp import status as st
from server.whatsapp.lifecycle import apply_status

NOW = dt.datetime(2026, 12, 7, 12, 0, 0, tzinfo=dt.UTC)


def _pending() -> WhatsAppSession:
    return WhatsAppSession(status=st.QR_PENDING, qr_rotacoes=0)


def test_a_late_webhook_keeps_the_time_waha_issued_the_qr() -> None:
    row = _pending()
    issued = NOW - dt.timedelta(seconds=12)
    apply_status(row, "SCAN_QR_CODE", me=None, now=NOW, max_qr_rotations=5, issued_at=issued)
    assert row.ultimo_qr_gerado == issued


def test_an_event_time_ahead_of_our_clock_counts_from_now() -> None:
    row = _pending()
    ahead = NOW + dt.timedelta(seconds=30)
    apply_status(row, "SCAN_QR_CODE", me=None, now=NOW, max_qr_rotations=5, issued_at=ahead)
    assert row.ultimo_qr_gerado == NOW
