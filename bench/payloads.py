"""Provider payloads, signed as the providers sign them; the same bytes go to our sidecar and
to the bare baseline. Deterministic for a (run, index), so a generator can rebuild them."""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class WahaTarget:
    session: str
    tenant_id: str
    user_id: str
    own_phone: str
    hmac_key: str


@dataclass(frozen=True)
class Signed:
    body: bytes
    headers: dict[str, str]


def waha_headers(key: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha512).hexdigest()
    return {
        "content-type": "application/json",
        "x-webhook-hmac": digest,
        "x-webhook-hmac-algorithm": "sha512",
    }


def waha_envelope(target: WahaTarget, event: str, payload: dict[str, object], event_id: str,
                  now_ms: int) -> Signed:  # fmt: skip
    """A WAHA webhook envelope (docs/providers.md, WAHA) as the WAHA fake sends it."""
    envelope = {
        "id": event_id,
        "timestamp": now_ms,
        "event": event,
        "session": target.session,
        "metadata": {"organizacao_id": target.tenant_id, "usuario_id": target.user_id},
        "me": {"id": f"{target.own_phone}@c.us", "pushName": "Bench"},
        "payload": payload,
        "engine": "WEBJS",
        "environment": {"version": "2026.7.1", "engine": "WEBJS", "tier": "PLUS"},
    }
    body = json.dumps(envelope, separators=(",", ":")).encode()
    return Signed(body, waha_headers(target.hmac_key, body))


def inbound_message(target: WahaTarget, run: str, index: int, now_ms: int) -> Signed:
    """An inbound text from a distinct phone per index: a new contact and conversation each.
    The body starts with `bench:<run>:<index>` so the event that reports it can be matched."""
    # A valid Brazilian mobile (+55 21 99...), distinct per run and index.
    phone = f"552199{zlib.crc32(run.encode()) % 100:02d}{index % 100_000:05d}"
    message_id = f"false_{phone}@c.us_{run.upper()}{index:08X}"
    payload = {
        "id": message_id,
        "timestamp": now_ms // 1000,
        "from": f"{phone}@c.us",
        "fromMe": False,
        "to": f"{target.own_phone}@c.us",
        "body": f"bench:{run}:{index} Bom dia, quero saber o preco do plano anual",
        "hasMedia": False,
        "ack": 1,
        "_data": {"notifyName": f"Lead {index}"},
    }
    return waha_envelope(target, "message", payload, f"evt_{run}_{index:08d}", now_ms)


def session_status(target: WahaTarget, status: str, index: int, run: str, now_ms: int) -> Signed:
    return waha_envelope(
        target, "session.status", {"status": status}, f"evt_st_{run}_{index:06d}", now_ms
    )


def leadgen(app_secret: str, page_id: str, form_id: str, leadgen_id: str, now: int) -> Signed:
    """A Lead Ads `leadgen` change as Meta posts it, signed with X-Hub-Signature-256."""
    value = {
        "leadgen_id": int(leadgen_id),
        "page_id": int(page_id),
        "form_id": int(form_id),
        "adgroup_id": 0,
        "ad_id": 0,
        "created_time": now,
    }
    entry = {"id": int(page_id), "time": now, "changes": [{"field": "leadgen", "value": value}]}
    body = json.dumps({"object": "page", "entry": [entry]}, separators=(",", ":")).encode()
    signature = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return Signed(body, {"content-type": "application/json", "x-hub-signature-256": signature})


def instagram_sender(run: str, index: int) -> str:
    """The IGSID of the `index`th DM's sender in `run`."""
    return f"9{zlib.crc32(run.encode()) % 10**6:06d}{index:09d}"


def instagram_dm(app_secret: str, account_id: str, run: str, index: int, now_ms: int) -> Signed:
    """An Instagram DM from a distinct sender per index (a new contact and pre-opportunity
    each), as Meta posts it: `entry[].id` the account's user_id, ms timestamps, signed with
    X-Hub-Signature-256. The text starts with `bench:<run>:<index>` to match its event."""
    sender = instagram_sender(run, index)
    item = {
        "sender": {"id": sender},
        "recipient": {"id": account_id},
        "timestamp": now_ms,
        "message": {
            "mid": f"aWdfbench{run}{index:09d}",
            "text": f"bench:{run}:{index} Oi, vi o anuncio e quero saber o preco",
        },
    }
    entry = {"id": account_id, "time": now_ms, "messaging": [item]}
    body = json.dumps({"object": "instagram", "entry": [entry]}, separators=(",", ":")).encode()
    signature = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return Signed(body, {"content-type": "application/json", "x-hub-signature-256": signature})
