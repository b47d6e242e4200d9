"""Row 8: Conversions API, pipeline events until Meta (the Graph sandbox) has them.

The demo tenant gets a pixel of its own in the sandbox and an active CAPI configuration. N
pipeline events (MQL, each for a new contact with e-mail and phone) are published through
CrmEventsService.PublishPipelineEvent at a closed-loop concurrency; each event's latency is
its arrival at the sandbox's `/{pixel}/events` (recorded there) minus the moment its publish
was sent, and throughput is N over the time until the last one arrived. Every event went
through the contact mirror, the pending log row, the `capi_event` job, the worker's batch (up
to 1,000 events per request, hashed user data) and the log's outcome.

Baseline: the same HTTP calls our path made in the run before it, sent bare: the sandbox
records how many events each request to the pixel carried, and the baseline POSTs batches of
exactly those sizes (N events, hashed like ours) straight to the same `/{pixel}/events`
endpoint, one request after another as our tenant's batch lock sends them. An event's latency
is its batch's round trip; throughput is N over the time all batches took. The ratio is
therefore our whole path (publish RPC, contact mirror, pending log row, job, batch) against
the provider round trips it needed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Any

from renove.conexoes.v1 import conversions_service_pb2 as pb
from renove.conexoes.v1 import conversions_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import crm_events_service_pb2 as epb
from renove.conexoes.v1 import crm_events_service_pb2_grpc as epb_grpc

from bench.report import Figure
from bench.scenarios.context import Context, poll
from bench.stats import latency_summary, median_of
from server.auth.caller import Role
from server.conversions.events import meta_event
from server.providers.meta_user_data import ContactInfo, user_data

ROW = "10. CAPI event -> Meta"
_VERSION = "v21.0"


async def _pixel(ctx: Context) -> tuple[str, str]:
    made = await ctx.http.post(f"{ctx.graph_url}/_control/capi/pixels")
    made.raise_for_status()
    body = made.json()
    return str(body["pixel_id"]), str(body["access_token"])


async def _received(ctx: Context, pixel: str) -> dict[str, Any]:
    """The pixel's arrivals (event_id -> time) and the events each request carried."""
    got = await ctx.http.get(
        f"{ctx.graph_url}/_control/capi/pixels/{pixel}/events", params={"arrivals_only": "1"}
    )
    got.raise_for_status()
    body: dict[str, Any] = got.json()
    return body


async def _ours(ctx: Context, count: int, concurrency: int) -> tuple[dict[str, float], list[int]]:
    """Our path's figures, and the sizes of the requests it sent (for the baseline)."""
    pixel, token = await _pixel(ctx)
    md = ctx.stack.md(Role.ADMIN)
    await pb_grpc.ConversionsServiceStub(ctx.channel).SaveCapiConfig(
        pb.SaveCapiConfigRequest(pixel_id=pixel, access_token=token, ativo=True), metadata=md
    )
    events = epb_grpc.CrmEventsServiceStub(ctx.channel)
    sent: dict[str, float] = {}
    queue = list(range(count))

    async def publisher() -> None:
        while queue:
            index = queue.pop()
            request_id = f"bench-{uuid.uuid4()}"
            sent[request_id] = time.time()
            await events.PublishPipelineEvent(
                epb.PublishPipelineEventRequest(
                    request_id=request_id,
                    event_type=epb.PIPELINE_EVENT_TYPE_MQL,
                    contato_id=str(uuid.uuid4()),
                    contato=epb.ContactData(
                        email=f"bench{index}@example.com", primeiro_nome="Bench"
                    ),
                ),
                metadata=md,
            )

    started = time.time()
    await asyncio.gather(*(publisher() for _ in range(concurrency)))

    async def all_arrived() -> dict[str, Any] | None:
        received = await _received(ctx, pixel)
        return received if len(received["arrivals"]) >= count else None

    received = await poll(all_arrived, within=300)
    arrivals: dict[str, float] = received["arrivals"]
    latencies = [(arrivals[rid] - at) * 1000 for rid, at in sent.items() if rid in arrivals]
    elapsed = max(arrivals.values()) - started
    await pb_grpc.ConversionsServiceStub(ctx.channel).SaveCapiConfig(
        pb.SaveCapiConfigRequest(ativo=False), metadata=md
    )
    figures = {"events_per_s": round(count / elapsed, 1), **latency_summary(latencies)}
    return figures, [int(n) for n in received["batch_sizes"]]


async def _baseline(ctx: Context, batch_sizes: list[int]) -> dict[str, float]:
    pixel, token = await _pixel(ctx)
    url = f"{ctx.graph_url}/{_VERSION}/{pixel}/events"

    def event(i: int) -> dict[str, Any]:
        return meta_event(
            crm_event="mql",
            event_id=f"base-{uuid.uuid4()}",
            event_time=dt.datetime.now(dt.UTC),
            user_data=user_data(ContactInfo(email=f"bench{i}@example.com", first_name="Bench")),
        )

    bodies = [{"access_token": token, "data": [event(i) for i in range(n)]} for n in batch_sizes]
    latencies: list[float] = []
    started = time.perf_counter()
    for body in bodies:
        began = time.perf_counter()
        answer = await ctx.http.post(url, json=body)
        answer.raise_for_status()
        latencies.extend([(time.perf_counter() - began) * 1000] * len(body["data"]))
    elapsed = time.perf_counter() - started
    count = sum(batch_sizes)
    return {
        "events_per_s": round(count / elapsed, 1),
        "requests": len(bodies),
        **latency_summary(latencies),
    }


async def run(ctx: Context) -> None:
    profile = ctx.profile
    count, concurrency = profile.capi_events, profile.capi_concurrency
    ours, bare = [], []
    for _ in range(profile.runs):
        figures, batch_sizes = await _ours(ctx, count, concurrency)
        ours.append({**figures, "requests": len(batch_sizes)})
        bare.append(await _baseline(ctx, batch_sizes))
    ctx.report.raw["capi"] = {"ours": ours, "baseline": bare}
    label = "the same batches POSTed to the sandbox pixel, bare"
    note = f"{count} MQL events, {concurrency} publishers"
    ctx.report.add(
        Figure(ROW, "events/s", median_of(ours, "events_per_s"),
               median_of(bare, "events_per_s"), "higher", len(ours), label, note)
    )  # fmt: skip
    ctx.report.add(
        Figure(ROW, "p99 ms (publish -> at Meta)", median_of(ours, "p99_ms"),
               median_of(bare, "p99_ms"), "lower", len(ours), label, note)
    )  # fmt: skip
