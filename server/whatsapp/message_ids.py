"""The WhatsApp id of a message we send, fixed before WAHA sees it.

sendText takes a pre-generated message `id` (docs/providers.md, WAHA "Send text"). WhatsApp
knows a message by its chat, sender and id, so a send repeated under the same id (a worker that
died after WAHA took the message, before its result was stored) is the same message to both
phones, not a second one. The id comes from our row's uuid, so every attempt sends the same one
without storing anything new, and the row carries WAHA's serialized form from the start: an ack
that beats the send's result still finds its message.
"""

from __future__ import annotations

import hashlib
import uuid


def wa_message_key(message_id: uuid.UUID) -> str:
    """The id after the chat in WAHA's serialized id, shaped like WhatsApp Web's (`3EB0` + hex)."""
    return "3EB0" + hashlib.sha256(message_id.bytes).hexdigest()[:16].upper()


def serialized_id(chat_id: str, key: str) -> str:
    """WAHA's id of our own message in `chat_id`: `true_{chatId}_{key}`."""
    return f"true_{chat_id}_{key}"
