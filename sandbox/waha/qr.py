"""QR images: a real PNG of the raw pairing string, as WAHA serves at `/auth/qr`."""

from __future__ import annotations

import io

import segno


def qr_png(value: str) -> bytes:
    """Render `value` as a PNG QR code (scale 6, quiet zone 4, as phone cameras like it)."""
    buffer = io.BytesIO()
    segno.make(value, error="l", micro=False).save(buffer, kind="png", scale=6, border=4)
    return buffer.getvalue()
