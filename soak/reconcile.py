"""After the load: what the sandbox sent and received against what the service stored and did.

Per stream (provider and direction):
  sent        items the soak produced
  accepted    items the service said yes to (a 2xx to the webhook, an OK to the RPC)
  processed   accepted items found done: stored with their result, or delivered to the provider
  duplicated  extra copies of an item (two rows, two opportunities, two deliveries)
  dead        accepted items not done whose job is in the dead letters (reasons listed)
  lost        accepted items neither done nor dead-lettered: must be 0
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from soak.traffic import Item, Sent


@dataclass
class Row:
    stream: str
    sent: int = 0
    accepted: int = 0
    processed: int = 0
    duplicated: int = 0
    dead: int = 0
    lost: int = 0
    refused: int = 0
    lost_keys: list[str] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    p_during: tuple[float, float] | None = None
    p_outside: tuple[float, float] | None = None


@dataclass
class Reconciliation:
    rows: list[Row]
    dead_letters: list[tuple[str, str, int]]  # (operation, reason, count)
    chaos: dict[str, Any]

    @property
    def ok(self) -> bool:
        # A stream the service accepted nothing of proves nothing: that fails too.
        return all(r.lost == 0 and r.duplicated == 0 and r.accepted > 0 for r in self.rows)


def percentiles(values: list[float]) -> tuple[float, float] | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


async def _stored_conversas(conn: asyncpg.Connection, canal: str, run: str) -> Counter[str]:
    rows = await conn.fetch(
        "SELECT split_part(conteudo, ' ', 1) AS tag, count(*) AS n FROM conversas"
        " WHERE canal = $1 AND conteudo LIKE $2 GROUP BY 1",
        canal,
        f"bench:{run}:%",
    )
    return Counter({r["tag"]: int(r["n"]) for r in rows})


async def _stored_leads(conn: asyncpg.Connection, ids: list[str]) -> Counter[str]:
    rows = await conn.fetch(
        "SELECT l.leadgen_id, (SELECT count(*) FROM oportunidades o"
        "  WHERE o.contato_id = l.contato_id) AS n"
        " FROM leads_meta_recebidos l"
        " WHERE l.leadgen_id = ANY($1::text[]) AND l.oportunidade_id IS NOT NULL",
        ids,
    )
    return Counter({r["leadgen_id"]: int(r["n"]) for r in rows})


async def _delivered(http: httpx.AsyncClient, sandbox_url: str, run: str) -> Counter[str]:
    answer = await http.get(f"{sandbox_url}/waha/_control/messages", params={"source": "api"})
    answer.raise_for_status()
    tags: Counter[str] = Counter()
    for row in answer.json():
        body = str(row["message"].get("body") or "")
        if body.startswith(f"soakout:{run}:"):
            tags[body.split(" ", 1)[0]] += 1
    return tags


async def _at_meta(http: httpx.AsyncClient, sandbox_url: str, pixel: str) -> Counter[str]:
    answer = await http.get(f"{sandbox_url}/graph/_control/capi/pixels/{pixel}/events")
    answer.raise_for_status()
    return Counter(str(event.get("event_id")) for event in answer.json()["events"])


async def dead_letters(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT operacao, idempotency_key, payload::text AS payload, ultimo_erro"
            " FROM eventos_pendentes WHERE status = 'failed'"
        )
    )


async def open_jobs(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM eventos_pendentes WHERE status IN ('pending', 'processing')"
            )
        )
    finally:
        await conn.close()


def _row(name: str, items: list[Item], done: Counter[str], dead_text: list[str],
         window: tuple[float, float]) -> Row:  # fmt: skip
    row = Row(name, sent=len(items))
    during: list[float] = []
    outside: list[float] = []
    for item in items:
        copies = done.get(item.key, 0)
        row.duplicated += max(0, copies - 1)
        if not item.accepted:
            row.refused += 1
            row.refusals[item.refused[:100]] += 1
            continue
        row.accepted += 1
        assert item.latency is not None
        (during if window[0] <= item.started <= window[1] else outside).append(item.latency)
        if copies:
            row.processed += 1
        elif item.link and any(item.link in text for text in dead_text):
            row.dead += 1
        else:
            row.lost += 1
            row.lost_keys.append(item.key)
    row.p_during, row.p_outside = percentiles(during), percentiles(outside)
    return row


async def reconcile(
    dsn: str,
    http: httpx.AsyncClient,
    sandbox_url: str,
    run: str,
    sent: Sent,
    window: tuple[float, float],
    pixel: str,
) -> Reconciliation:
    conn = await asyncpg.connect(dsn)
    try:
        letters = await dead_letters(conn)
        dead_text = [f"{r['idempotency_key']} {r['payload']}" for r in letters]
        leads = [i.key for i in sent.of("leadgen_in")]
        done = {
            "whatsapp_in": await _stored_conversas(conn, "whatsapp", run),
            "instagram_in": await _stored_conversas(conn, "instagram", run),
            "leadgen_in": await _stored_leads(conn, leads),
            "whatsapp_out": await _delivered(http, sandbox_url, run),
            "capi_out": await _at_meta(http, sandbox_url, pixel),
        }
    finally:
        await conn.close()
    rows = [_row(name, sent.of(name), found, dead_text, window) for name, found in done.items()]
    reasons = Counter((r["operacao"], (r["ultimo_erro"] or "")[:90]) for r in letters)
    chaos = (await http.get(f"{sandbox_url}/_control/chaos")).json()
    return Reconciliation(rows, [(op, why, n) for (op, why), n in reasons.items()], chaos)


def _ms(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None else f"{pair[0] * 1000:.0f}/{pair[1] * 1000:.0f}"


def table(result: Reconciliation) -> str:
    head = ("stream", "sent", "accepted", "processed", "duplicated", "lost", "dead", "refused",
            "p50/p99 ms faults", "p50/p99 ms calm")  # fmt: skip
    lines = [head]
    for r in result.rows:
        lines.append((r.stream, str(r.sent), str(r.accepted), str(r.processed),
                      str(r.duplicated), str(r.lost), str(r.dead), str(r.refused),
                      _ms(r.p_during), _ms(r.p_outside)))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.append("")
    out.append(f"dead letters: {sum(n for _, _, n in result.dead_letters)}")
    for op, why, n in result.dead_letters:
        out.append(f"  {n:4d}  {op}: {why}")
    c = result.chaos
    out.append(
        f"sandbox chaos: {c.get('calls')} calls, {c.get('failed')} failed, {c.get('hung')} hung"
    )
    for r in result.rows:
        for why, n in r.refusals.items():
            out.append(f"refused {r.stream}: {n} x {why}")
    for r in result.rows:
        if r.lost_keys:
            out.append(
                f"LOST {r.stream}: {', '.join(r.lost_keys[:10])}"
                + (" ..." if len(r.lost_keys) > 10 else "")
            )
    return "\n".join(out)
