"""After the load: what the sandbox sent and received against what the service stored and did.

Per stream (provider and direction):
  sent        items the soak produced
  accepted    items the service said yes to (a 2xx to the webhook, an OK to the RPC)
  processed   accepted items found done: stored with their result, or delivered to the provider
  duplicated  extra copies of an item (two rows, two opportunities, two deliveries)
  dead        accepted items not done whose job is in the dead letters (reasons listed)
  lost        accepted items neither done nor dead-lettered: must be 0
  p50/p99     seconds from an item's first attempt until it was done (stored and processed,
              or at the provider), for items started during the faults and outside them
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from soak.found import Found
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
    duplicated_keys: list[str] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    p_during: tuple[float, float] | None = None
    p_outside: tuple[float, float] | None = None


@dataclass
class Reconciliation:
    rows: list[Row]
    dead_letters: list[tuple[str, str, int]]  # (operation, reason, count)
    chaos: dict[str, Any]
    # WhatsApp sends that reached WAHA again under their message id (a retry after a lost
    # worker or a lost answer): WhatsApp keeps one message, so they are not duplicates.
    waha_repeats: int = 0

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


async def dead_letters(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT id, operacao, idempotency_key, payload::text AS payload, ultimo_erro"
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


def _row(name: str, items: list[Item], done: Found, dead_text: list[str],
         window: tuple[float, float]) -> Row:  # fmt: skip
    row = Row(name, sent=len(items))
    during: list[float] = []
    outside: list[float] = []
    for item in items:
        times = done.get(item.key, [])
        row.duplicated += max(0, len(times) - 1)
        if len(times) > 1:
            row.duplicated_keys.append(f"{item.key} x{len(times)}")
        if not item.accepted:
            row.refused += 1
            row.refusals[item.refused[:100]] += 1
            continue
        row.accepted += 1
        finished = [t for t in times if not math.isnan(t)]
        if finished:
            row.processed += 1
            # Time to processed: from the item's first attempt to the first time it was done.
            took = max(0.0, min(finished) - item.wall)
            (during if window[0] <= item.started <= window[1] else outside).append(took)
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
    sent: Sent,
    window: tuple[float, float],
    what_was_done: Callable[[asyncpg.Connection], Awaitable[dict[str, Found]]],
) -> Reconciliation:
    """`what_was_done` reads, per stream, what the service did (soak/found.py)."""
    conn = await asyncpg.connect(dsn)
    try:
        letters = await dead_letters(conn)
        dead_text = [f"{r['id']} {r['idempotency_key']} {r['payload']}" for r in letters]
        done = await what_was_done(conn)
    finally:
        await conn.close()
    rows = [_row(name, sent.of(name), found, dead_text, window) for name, found in done.items()]
    reasons = Counter((r["operacao"], (r["ultimo_erro"] or "")[:90]) for r in letters)
    chaos = (await http.get(f"{sandbox_url}/_control/chaos")).json()
    sends = await http.get(f"{sandbox_url}/waha/_control/messages", params={"source": "api"})
    repeats = sum(int(row.get("repeats") or 0) for row in sends.raise_for_status().json())
    dead = [(op, why, n) for (op, why), n in reasons.items()]
    return Reconciliation(rows, dead, chaos, repeats)


def _s(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None else f"{pair[0]:.2f}/{pair[1]:.2f}"


def table(result: Reconciliation) -> str:
    head = ("stream", "sent", "accepted", "processed", "duplicated", "lost", "dead", "refused",
            "p50/p99 s faults", "p50/p99 s calm")  # fmt: skip
    lines = [head]
    for r in result.rows:
        lines.append((r.stream, str(r.sent), str(r.accepted), str(r.processed),
                      str(r.duplicated), str(r.lost), str(r.dead), str(r.refused),
                      _s(r.p_during), _s(r.p_outside)))  # fmt: skip
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
    if result.waha_repeats:
        out.append(
            f"WhatsApp sends repeated under their message id (one message each at WhatsApp):"
            f" {result.waha_repeats}"
        )
    for r in result.rows:
        for why, n in r.refusals.items():
            out.append(f"refused {r.stream}: {n} x {why}")
    for r in result.rows:
        for label, keys in (("LOST", r.lost_keys), ("DUPLICATED", r.duplicated_keys)):
            if keys:
                more = " ..." if len(keys) > 10 else ""
                out.append(f"{label} {r.stream}: {', '.join(keys[:10])}{more}")
    return "\n".join(out)
