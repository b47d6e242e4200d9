"""Media messages: what WhatsApp said about the file (kind, mimetype, filename, size, where
WAHA keeps it), stored with the message, and the file fetched from WAHA for a caller who may
see the message (the frontend never talks to WAHA)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import select

from db.models import Message
from server.auth.caller import Caller
from server.protoconv import parse_uuid
from server.whatsapp.connection import CANAL, waha
from server.whatsapp.errors import MessageNotFound

if TYPE_CHECKING:
    from server.bootstrap import Deps

KINDS = ("image", "video", "audio")


@dataclass(frozen=True)
class MediaFile:
    media: dict[str, Any]
    data: bytes


def media_of(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `media` facts of a WAMessage, or None for a message without a file."""
    media = payload.get("media")
    if not payload.get("hasMedia") or not isinstance(media, Mapping):
        return None
    mimetype = str(media.get("mimetype") or "application/octet-stream")
    top = mimetype.split("/", 1)[0]
    data = payload.get("_data")
    size = data.get("size") if isinstance(data, Mapping) else None
    url = str(media.get("url") or "")
    return {
        "kind": top if top in KINDS else "document",
        "mimetype": mimetype,
        "filename": str(media.get("filename") or ""),
        "size": size if isinstance(size, int) and not isinstance(size, bool) else None,
        # Only the path is kept: the file is fetched from the WAHA we are configured with,
        # never from a host a webhook names.
        "path": urlsplit(url).path if url else "",
    }


async def fetch_media(deps: Deps, caller: Caller, message_id_text: str) -> MediaFile:
    """The file of one of the caller's media messages.

    Raises:
        MessageNotFound: not the caller's message (RLS and the owner check) or no file.
    """
    message_id = parse_uuid(message_id_text, "message_id")
    user = caller.require_user()
    async with deps.db.unit_of_work(caller) as tx:
        row = await tx.scalar(
            select(Message).where(
                Message.id == message_id, Message.canal == CANAL, Message.usuario_id == user
            )
        )
    media = (row.metadata_ or {}).get("media") if row is not None else None
    if not isinstance(media, dict) or not str(media.get("path") or "").startswith("/api/files/"):
        raise MessageNotFound("no such media message", metadata={"message_id": message_id_text})
    client = await waha(deps)
    async with deps.breakers.guard("waha"):
        mimetype, data = await client.download(str(media["path"]))
    return MediaFile(
        {**media, "mimetype": media.get("mimetype") or mimetype, "size": len(data)}, data
    )
