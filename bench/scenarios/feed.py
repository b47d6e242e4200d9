"""Row 7: the change feed, as the CRM core consumes it.

Per run, on a tenant of its own: a consumer (the CRM core's service identity) watches the
feed, goes away, misses `feed_missed` changes, and comes back with `after_sequence`. Two
figures:

- catch-up: from the resumed WatchEvents call to the last missed change received (replay
  from the outbox). Baseline: a bare asyncpg SELECT of the same number of rows of a bare
  feed table after a sequence.
- event -> resumed consumer: then, one change at a time, from the start of the transaction
  that records it (record_change in a unit of work, as the service does it) to its arrival on
  the resumed stream. Baseline: bare LISTEN/NOTIFY: one asyncpg transaction doing an INSERT
  and pg_notify, until a LISTENing asyncpg connection hears it.

Producers and consumers run in the runner (load core); server and PostgreSQL on the server
core, as for every row.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
import grpc
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import connections_service_pb2_grpc as cpb_grpc

from bench.report import Figure
from bench.scenarios.context import Context
from bench.stack import SERVICE_SECRET
from bench.stats import latency_summary, median_of
from db.bootstrap import prepare_database
from db.uow import Database
from server.auth.caller import Caller, Role
from server.auth.tokens import mint_token
from server.outbox import record_change

ROW = "9. change feed"
_CHANNEL = "bench_feed"
_BARE_TABLE = """CREATE TABLE IF NOT EXISTS bench_feed (
  sequencia bigserial PRIMARY KEY, payload jsonb NOT NULL, criado_em timestamptz DEFAULT now())"""


async def _next_event(call: grpc.aio.UnaryStreamCall) -> cpb.ConnectionEvent:
    while True:
        message = await call.read()
        if message is grpc.aio.EOF:
            raise RuntimeError("the feed ended")
        if message.WhichOneof("kind") == "event":
            return message.event


class _Ours:
    def __init__(self, ctx: Context, db: Database) -> None:
        self.tenant = uuid.uuid4()
        self.db = db
        self.caller = Caller(role=Role.SERVICE, tenant_id=self.tenant)
        token = mint_token(SERVICE_SECRET, role=Role.SERVICE, tenant_id=self.tenant)
        self.md = (("authorization", f"Bearer {token}"),)
        self.stub = cpb_grpc.ConnectionsServiceStub(ctx.channel)
        self.last = 0

    async def produce(self, n: int) -> None:
        async with self.db.unit_of_work(self.caller) as session:
            await record_change(session, self.tenant, "CONTACT_CHANGED", {"n": n})

    def watch(self) -> grpc.aio.UnaryStreamCall:
        return self.stub.WatchEvents(
            cpb.WatchEventsRequest(after_sequence=self.last), metadata=self.md
        )

    async def run(self, missed: int, samples: int) -> dict[str, dict[str, float]]:
        await self.db.ensure_identity(self.caller)
        call = self.watch()
        await call.read()  # snapshot
        await self.produce(0)
        self.last = (await _next_event(call)).sequence
        call.cancel()
        for n in range(missed):
            await self.produce(n)
        began = time.perf_counter()
        call = self.watch()
        for _ in range(missed):
            self.last = (await _next_event(call)).sequence
        catch_up = [(time.perf_counter() - began) * 1000]
        live = []
        for n in range(samples):
            began = time.perf_counter()
            await self.produce(n)
            event = await _next_event(call)
            live.append((time.perf_counter() - began) * 1000)
            self.last = event.sequence
        call.cancel()
        return {"catch_up": latency_summary(catch_up), "live": latency_summary(live)}


async def _bare(dsn: str, missed: int, samples: int) -> dict[str, dict[str, float]]:
    producer = await asyncpg.connect(dsn)
    listener = await asyncpg.connect(dsn)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(_CHANNEL, lambda *args: heard.put_nowait(args[3]))
    try:
        await producer.execute(_BARE_TABLE)
        after = await producer.fetchval("SELECT COALESCE(max(sequencia), 0) FROM bench_feed")

        async def produce(n: int) -> None:
            async with producer.transaction():
                seq = await producer.fetchval(
                    "INSERT INTO bench_feed (payload) VALUES ($1::jsonb) RETURNING sequencia",
                    json.dumps({"n": n}),
                )
                await producer.execute("SELECT pg_notify($1, $2)", _CHANNEL, str(seq))

        for n in range(missed):
            await produce(n)
        while not heard.empty():
            heard.get_nowait()
        began = time.perf_counter()
        rows = await producer.fetch(
            "SELECT * FROM bench_feed WHERE sequencia > $1 ORDER BY sequencia LIMIT $2",
            after,
            missed,
        )
        catch_up = [(time.perf_counter() - began) * 1000]
        assert len(rows) == missed
        live = []
        for n in range(samples):
            began = time.perf_counter()
            await produce(n)
            await heard.get()
            live.append((time.perf_counter() - began) * 1000)
        return {"catch_up": latency_summary(catch_up), "live": latency_summary(live)}
    finally:
        await listener.close()
        await producer.close()


async def run(ctx: Context) -> None:
    profile = ctx.profile
    missed, samples = profile.feed_missed, profile.feed_samples
    app_url = await prepare_database(ctx.stack.owner_url, data_dir=ctx.stack.data_dir)
    db = Database(app_url, pool_size=2, max_overflow=0)
    ours: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    try:
        for _ in range(profile.runs):
            ours.append(await _Ours(ctx, db).run(missed, samples))
            bare.append(await _bare(ctx.stack.dsn, missed, samples))
    finally:
        await db.dispose()
    ctx.report.raw["feed"] = {"ours": ours, "baseline": bare}
    note = f"{missed} missed changes, then {samples} sequential changes per run"
    catch_up = ([r["catch_up"] for r in ours], [r["catch_up"] for r in bare])
    live = ([r["live"] for r in ours], [r["live"] for r in bare])
    ctx.report.add(
        Figure(ROW, f"catch-up of {missed} missed (ms)", median_of(catch_up[0], "p50_ms"),
               median_of(catch_up[1], "p50_ms"), "lower", len(ours),
               "bare SELECT of the missed rows", note)
    )  # fmt: skip
    for key, name in (("p50_ms", "event -> resumed consumer p50 (ms)"),
                      ("p99_ms", "event -> resumed consumer p99 (ms)")):  # fmt: skip
        ctx.report.add(
            Figure(ROW, name, median_of(live[0], key), median_of(live[1], key), "lower",
                   len(ours), "bare INSERT+NOTIFY -> LISTEN (asyncpg)", note)
        )  # fmt: skip
