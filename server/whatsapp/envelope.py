"""The WAHA webhook envelope (docs/providers.md, WAHA) and its routing check."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.providers.waha import WahaMe


@dataclass(frozen=True)
class Envelope:
    """The WAHA webhook envelope (docs/providers.md, WAHA)."""

    event: str
    session: str
    id: str | None = None
    timestamp_ms: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    me: WahaMe | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: bytes) -> Envelope | None:
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("event"), str):
            return None
        meta, payload, ts = raw.get("metadata"), raw.get("payload"), raw.get("timestamp")
        return cls(
            event=raw["event"],
            session=str(raw.get("session") or ""),
            id=raw.get("id") if isinstance(raw.get("id"), str) else None,
            timestamp_ms=ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
            metadata=meta if isinstance(meta, dict) else {},
            me=WahaMe.parse(raw.get("me")),
            payload=payload if isinstance(payload, dict) else {},
        )

    def at(self, fallback: dt.datetime) -> dt.datetime:
        if self.timestamp_ms is None:
            return fallback
        return dt.datetime.fromtimestamp(self.timestamp_ms / 1000, dt.UTC)


def metadata_mismatch(envelope: Envelope, ids: Mapping[str, object]) -> str | None:
    """Which routing id in the envelope's metadata contradicts our record (`ids`: the
    session's `organizacao_id` and `usuario_id`), if any."""
    for key in ("organizacao_id", "usuario_id"):
        ours = ids.get(key)
        theirs = envelope.metadata.get(key)
        if theirs is not None and str(theirs) != str(ours):
            return key
    return None
