"""WAHA's data as the fake keeps it, and its wire shapes (docs/providers.md, WAHA).

The dataclasses are the fake's own state; the `*_json` functions render them exactly as WAHA
does on the wire, so the shapes live in one place.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

# Status names exactly as WAHA's enum spells them (the PASSKEY_* ones only exist on GOWS).
STOPPED = "STOPPED"
STARTING = "STARTING"
SCAN_QR_CODE = "SCAN_QR_CODE"
WORKING = "WORKING"
FAILED = "FAILED"

ACK_NAMES: dict[int, str] = {
    -1: "ERROR",
    0: "PENDING",
    1: "SERVER",
    2: "DEVICE",
    3: "READ",
    4: "PLAYED",
}

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_ulid(now_ms: int) -> str:
    """A lowercase ULID: 48-bit ms timestamp + 80 random bits, Crockford base32."""
    value = (now_ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, index = divmod(value, 32)
        chars.append(_CROCKFORD[index])
    return "".join(reversed(chars))


def new_event_id(now_ms: int) -> str:
    """Envelope id as WAHA writes it: `evt_` + lowercase ULID."""
    return f"evt_{new_ulid(now_ms)}"


def new_wa_message_key() -> str:
    """The WhatsApp-side message id (what WEBJS shows after the chat id), e.g. `3EB0A1...`."""
    return "3EB0" + secrets.token_hex(8).upper()


def new_qr_value() -> str:
    """A string shaped like WhatsApp's pairing QR: `2@ref,noiseKey,identityKey,advSecret`."""
    parts = [base64.b64encode(os.urandom(n)).decode() for n in (48, 32, 32, 32)]
    return "2@" + ",".join(parts)


def new_pairing_code() -> str:
    """An 8-character pairing code as WhatsApp shows it: `ABCD-EFGH`."""
    alphabet = "ABCDEFGHJKLMNPQRSTVWXYZ0123456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def chat_id_for(phone_or_chat: str) -> str:
    """`5511...` → `5511...@c.us`; an id that already has a server suffix is kept."""
    if "@" in phone_or_chat:
        return phone_or_chat
    digits = "".join(ch for ch in phone_or_chat if ch.isdigit())
    return f"{digits}@c.us"


@dataclass
class Me:
    """The WhatsApp account linked to a session."""

    id: str
    push_name: str

    def to_json(self) -> JSON:
        return {"id": self.id, "pushName": self.push_name}


@dataclass
class Message:
    """One message the session has seen (sent by the API, the phone, or received)."""

    session: str
    key: str
    chat_id: str
    from_me: bool
    source: str
    body: str
    timestamp: int
    me_id: str
    ack: int
    push_name: str | None = None
    reply_to: str | None = None
    # A hidden-id (@lid) sender whose phone WhatsApp reveals: `_data.key.senderPn`.
    sender_pn: str | None = None
    # A media message: WAHA's `media` object (url, mimetype, filename) and the file's size.
    media: JSON | None = None
    media_size: int | None = None
    # When the fake saw it (epoch seconds; control listing only, not WAHA's): the soak
    # measures a send's time to reach the provider from it.
    arrived: float = field(default_factory=time.time)
    # sendText calls that came again with this message's pre-generated id (control listing).
    repeats: int = 0

    def _ends(self) -> tuple[str, str]:
        # (from, to): ours go from the linked account to the chat, theirs the other way.
        if self.from_me:
            return self.me_id, self.chat_id
        return self.chat_id, self.me_id

    @property
    def id(self) -> str:
        # WAHA's serialized id: `{fromMe}_{chatId}_{waKey}`.
        return f"{'true' if self.from_me else 'false'}_{self.chat_id}_{self.key}"

    def to_json(self) -> JSON:
        """The `WAMessage` shape (docs/providers.md, WAHA)."""
        sender, receiver = self._ends()
        data: JSON = {"id": {"fromMe": self.from_me, "remote": self.chat_id, "id": self.key}}
        if self.push_name is not None:
            data["notifyName"] = self.push_name
        if self.sender_pn is not None:
            data["key"] = {"remoteJid": self.chat_id, "senderPn": self.sender_pn}
        if self.media_size is not None:
            data["size"] = self.media_size
        return {
            "id": self.id,
            "timestamp": self.timestamp,
            "from": sender,
            "fromMe": self.from_me,
            "source": self.source,
            "to": receiver,
            "participant": None,
            "body": self.body,
            "hasMedia": self.media is not None,
            "media": self.media,
            "ack": self.ack,
            "ackName": ACK_NAMES[self.ack],
            "author": None,
            "location": None,
            "vCards": [],
            "replyTo": self.reply_to,
            "_data": data,
        }

    def ack_json(self) -> JSON:
        """The `message.ack` payload."""
        sender, receiver = self._ends()
        return {
            "id": self.id,
            "from": sender,
            "to": receiver,
            "participant": None,
            "fromMe": self.from_me,
            "ack": self.ack,
            "ackName": ACK_NAMES[self.ack],
            "_data": {},
        }


@dataclass
class Session:
    """A WAHA session: its config, where it is in its lifecycle, and the linked account.

    `account` survives stop/restart (WAHA keeps auth data) and goes away on logout.
    `auth_broken` plays a corrupted auth store: starting again ends in FAILED until logout.
    """

    name: str
    config: JSON
    status: str = STOPPED
    statuses: list[tuple[str, int]] = field(default_factory=list)
    account: Me | None = None
    auth_broken: bool = False
    qr_value: str | None = None
    qr_rotations: int = 0
    pairing_code: str | None = None
    last_activity_ms: int | None = None
    lifecycle_task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.status != STOPPED

    @property
    def me(self) -> Me | None:
        # WAHA shows `me` only while authenticated and WORKING.
        return self.account if self.status == WORKING else None

    @property
    def metadata(self) -> JSON | None:
        metadata = self.config.get("metadata")
        return metadata if isinstance(metadata, dict) else None

    def webhooks(self) -> list[JSON]:
        hooks = self.config.get("webhooks")
        return [h for h in hooks if isinstance(h, dict)] if isinstance(hooks, list) else []


def normalize_config(config: JSON | None) -> JSON:
    """Fill the keys WAHA echoes back with their defaults (nulls), as `GET /api/sessions` shows."""
    source = dict(config or {})
    hooks = []
    for hook in source.get("webhooks") or []:
        hooks.append(
            {
                "url": hook.get("url"),
                "events": list(hook.get("events") or []),
                "hmac": hook.get("hmac"),
                "retries": hook.get("retries"),
                "customHeaders": hook.get("customHeaders"),
            }
        )
    normalized: JSON = {
        "proxy": source.get("proxy"),
        "webhooks": hooks,
        "debug": bool(source.get("debug", False)),
    }
    if source.get("metadata") is not None:
        normalized["metadata"] = source["metadata"]
    for key, value in source.items():
        normalized.setdefault(key, value)
    return normalized


def session_dto_json(session: Session) -> JSON:
    """`SessionDTO`: what start/stop/restart/logout answer."""
    return {"name": session.name, "status": session.status, "config": session.config}


def session_info_json(session: Session, engine: str) -> JSON:
    """`SessionInfo`: what get/list/create answer."""
    me = session.me
    return {
        "name": session.name,
        "status": session.status,
        "config": session.config,
        "me": me.to_json() if me else None,
        "engine": {"engine": engine},
        "presence": None,
        "timestamps": {"activity": session.last_activity_ms},
    }


def session_status_payload(session: Session) -> JSON:
    """The `session.status` payload: the status plus the last three with their ms times."""
    return {
        "name": session.name,
        "status": session.status,
        "statuses": [{"status": s, "timestamp": t} for s, t in session.statuses[-3:]],
        "data": None,
    }
