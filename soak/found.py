"""What the service did with the soak's items, read back from its database and from the sandbox
(and the mail sink): per stream, item key -> the times (epoch seconds) each copy of the item
was done. One time: processed once; two: done twice; none: not done.

"Done" is what a user would see: the message stored, the lead's opportunity made, the event or
message at the provider, the e-mail in the mailbox, the meeting renamed after Google's push,
the delivery ack on the message.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import asyncpg
import httpx

Found = dict[str, list[float]]


def _grouped(rows: list[asyncpg.Record]) -> Found:
    found: Found = defaultdict(list)
    for row in rows:
        found[str(row["key"])].append(float(row["at"]))
    return dict(found)


async def stored_conversas(conn: asyncpg.Connection, canal: str, run: str) -> Found:
    """Inbound messages by their `bench:<run>:<i>` tag, when each row was stored."""
    rows = await conn.fetch(
        "SELECT split_part(conteudo, ' ', 1) AS key, extract(epoch FROM criado_em) AS at"
        " FROM conversas WHERE canal = $1 AND direcao = 'inbound' AND conteudo LIKE $2",
        canal,
        f"bench:{run}:%",
    )
    return _grouped(rows)


async def stored_leads(conn: asyncpg.Connection, ids: list[str]) -> Found:
    """Leads by leadgen id: one entry per opportunity of the lead's contact, when it was made."""
    rows = await conn.fetch(
        "SELECT l.leadgen_id AS key, extract(epoch FROM o.criado_em) AS at"
        " FROM leads_meta_recebidos l JOIN oportunidades o ON o.contato_id = l.contato_id"
        " WHERE l.leadgen_id = ANY($1::text[]) AND l.oportunidade_id IS NOT NULL",
        ids,
    )
    return _grouped(rows)


async def acked(conn: asyncpg.Connection, waha_ids: list[str], level: int) -> Found:
    """Our WhatsApp messages by WAHA id whose stored ack reached `level`, when it changed."""
    rows = await conn.fetch(
        "SELECT external_id AS key, extract(epoch FROM atualizado_em) AS at FROM conversas"
        " WHERE canal = 'whatsapp' AND direcao = 'outbound' AND external_id = ANY($1::text[])"
        " AND ack >= $2",
        waha_ids,
        level,
    )
    return _grouped(rows)


async def renamed_meetings(conn: asyncpg.Connection, titles: list[str]) -> Found:
    """Meetings whose title became one a push announced, when they were updated."""
    rows = await conn.fetch(
        "SELECT titulo AS key, extract(epoch FROM atualizado_em) AS at FROM meetings"
        " WHERE titulo = ANY($1::text[])",
        titles,
    )
    return _grouped(rows)


async def waha_sent(http: httpx.AsyncClient, sandbox_url: str, prefix: str) -> Found:
    """Messages the WAHA fake was asked to send, by the first word of their text."""
    answer = await http.get(f"{sandbox_url}/waha/_control/messages", params={"source": "api"})
    answer.raise_for_status()
    found: Found = defaultdict(list)
    for row in answer.json():
        body = str(row["message"].get("body") or "")
        if body.startswith(prefix):
            found[body.split(" ", 1)[0]].append(float(row["arrived"]))
    return dict(found)


async def waha_ids(http: httpx.AsyncClient, sandbox_url: str, prefix: str) -> dict[str, str]:
    """WAHA's message id of each sent message whose text starts with `prefix`."""
    answer = await http.get(f"{sandbox_url}/waha/_control/messages", params={"source": "api"})
    answer.raise_for_status()
    ids: dict[str, str] = {}
    for row in answer.json():
        body = str(row["message"].get("body") or "")
        if body.startswith(prefix):
            ids.setdefault(str(row["message"]["id"]), body.split(" ", 1)[0])
    return ids


async def pixel_events(http: httpx.AsyncClient, sandbox_url: str, pixel: str) -> Found:
    """CAPI events the pixel received, by event_id (Meta deduplicates on it; we must not need
    it to), each at the time its event_id first arrived."""
    answer = await http.get(f"{sandbox_url}/graph/_control/capi/pixels/{pixel}/events")
    answer.raise_for_status()
    body = answer.json()
    arrivals: dict[str, float] = body.get("arrivals", {})
    found: Found = defaultdict(list)
    for event in body["events"]:
        key = str(event.get("event_id"))
        found[key].append(float(arrivals.get(key, 0.0)))
    return dict(found)


async def instagram_sent(http: httpx.AsyncClient, sandbox_url: str, prefix: str) -> Found:
    answer = await http.get(f"{sandbox_url}/instagram/_control/sent")
    answer.raise_for_status()
    found: Found = defaultdict(list)
    for row in answer.json():
        text = str((row.get("message") or {}).get("text") or "")
        if text.startswith(prefix):
            found[text.split(" ", 1)[0]].append(float(row["arrived"]))
    return dict(found)


def _rfc3339(value: Any) -> float:
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


async def calendar_events(
    http: httpx.AsyncClient, sandbox_url: str, calendar_id: str, prefix: str
) -> Found:
    """Events in the Google fake's calendar whose summary starts with `prefix`, by the
    summary's first word. An item's event counts as done once its summary is the updated one
    (`<tag> v2 ...`); every event carrying the tag is a copy."""
    answer = await http.get(f"{sandbox_url}/google/_control/calendars/{calendar_id}/events")
    answer.raise_for_status()
    found: Found = defaultdict(list)
    for event in answer.json()["items"]:
        summary = str(event.get("summary") or "")
        if not summary.startswith(prefix) or event.get("status") == "cancelled":
            continue
        tag, _, rest = summary.partition(" ")
        updated = rest.startswith("v2")
        found[tag].append(_rfc3339(event.get("updated")) if updated else float("nan"))
    return dict(found)


async def audience_additions(http: httpx.AsyncClient, sandbox_url: str, audience: str) -> Found:
    """Members uploaded to the audience, by hashed e-mail, each time they were added."""
    answer = await http.get(
        f"{sandbox_url}/graph/_control/audiences/{audience}", params={"additions": 1}
    )
    answer.raise_for_status()
    return {key: [float(t) for t in times] for key, times in answer.json()["additions"].items()}
