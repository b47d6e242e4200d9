"""The load: signed provider webhooks into the sidecar and WhatsApp sends through gRPC, at a
steady rate with bursts at 10x, each item retried the way its sender would (providers retry a
webhook that did not get a 2xx; a CRM client repeats an RPC with the same request_id).

Every item is remembered with what it became (accepted or not, after how many attempts, how
long until accepted) so the reconciliation can say what was lost or done twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import httpx
from renove.conexoes.v1 import crm_events_service_pb2 as epb
from renove.conexoes.v1 import crm_events_service_pb2_grpc as epb_grpc
from renove.conexoes.v1 import whatsapp_service_pb2 as wpb
from renove.conexoes.v1 import whatsapp_service_pb2_grpc as wpb_grpc

from bench.payloads import Signed

T = TypeVar("T")
BURST_FACTOR = 10
MAX_IN_FLIGHT = 256
_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}


@dataclass
class Item:
    stream: str
    key: str  # what the reconciliation looks for in the database or the sandbox
    link: str  # what names the item's job (to find it among the dead letters)
    started: float  # monotonic, for the fault windows
    wall: float = field(default_factory=time.time)  # epoch, against the times things were done
    accepted: bool = False
    refused: str = ""  # a final non-retryable answer
    attempts: int = 0
    latency: float | None = None  # until accepted


@dataclass
class Sent:
    items: list[Item] = field(default_factory=list)

    def of(self, stream: str) -> list[Item]:
        return [i for i in self.items if i.stream == stream]


def backoff(attempt: int) -> float:
    return float(min(0.25 * 2 ** min(attempt, 5), 4.0))


async def post_webhook(
    http: httpx.AsyncClient, url: str, signed: Signed, item: Item, retry_until: float
) -> None:
    while True:
        item.attempts += 1
        status = 0
        try:
            answer = await http.post(url, content=signed.body, headers=signed.headers)
            status = answer.status_code
        except httpx.HTTPError:
            pass
        if 200 <= status < 300:
            item.accepted, item.latency = True, time.monotonic() - item.started
            return
        if 400 <= status < 500 and status not in (408, 429):
            item.refused = f"HTTP {status}"
            return
        if time.monotonic() > retry_until:
            item.refused = f"gave up after {item.attempts} attempts (last {status or 'no answer'})"
            return
        await asyncio.sleep(backoff(item.attempts))


async def call_with_retries(
    call: Callable[[], Awaitable[T]], item: Item, retry_until: float
) -> T | None:
    """Repeats an RPC (the same request, so the same request_id) until it answers or fails
    for good; None when it did not succeed."""
    while True:
        item.attempts += 1
        try:
            reply = await call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _RETRYABLE:
                item.refused = f"{exc.code().name}: {exc.details()}"
                return None
            if time.monotonic() > retry_until:
                item.refused = f"gave up after {item.attempts} attempts ({exc.code().name})"
                return None
            await asyncio.sleep(backoff(item.attempts))
            continue
        item.accepted, item.latency = True, time.monotonic() - item.started
        return reply


async def send_whatsapp(
    stub: wpb_grpc.WhatsAppServiceStub,
    md: tuple[tuple[str, str], ...],
    to: str,
    text: str,
    item: Item,
    retry_until: float,
) -> None:
    request = wpb.SendWhatsAppMessageRequest(to=to, text=text, request_id=str(uuid.uuid4()))
    reply = await call_with_retries(
        lambda: stub.SendWhatsAppMessage(request, metadata=md, timeout=15), item, retry_until
    )
    if reply is not None:
        item.link = reply.message.id


async def publish_pipeline_event(
    stub: epb_grpc.CrmEventsServiceStub,
    md: tuple[tuple[str, str], ...],
    index: int,
    item: Item,
    retry_until: float,
) -> None:
    """An MQL for a new contact; its request_id is the event_id Meta receives."""
    request = epb.PublishPipelineEventRequest(
        request_id=item.key,
        event_type=epb.PIPELINE_EVENT_TYPE_MQL,
        contato_id=str(uuid.uuid4()),
        contato=epb.ContactData(email=f"{item.key}@soak.example", primeiro_nome="Soak"),
    )
    await call_with_retries(
        lambda: stub.PublishPipelineEvent(request, metadata=md, timeout=15), item, retry_until
    )


Launch = Callable[[int, Item], Awaitable[None]]


@dataclass
class Stream:
    name: str
    rate: float
    launch: Launch  # sends item number `index`
    key_of: Callable[[int], tuple[str, str]]  # index -> (key, link)
    limit: int | None = None  # at most this many items (leads are made beforehand)


async def drive(
    streams: list[Stream],
    seconds: float,
    burst_every: float,
    burst_seconds: float,
    sent: Sent,
    began: float,
) -> None:
    """Open-loop: items start on schedule whether or not earlier ones are done."""
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()
    due = {s.name: 0.0 for s in streams}
    count = {s.name: 0 for s in streams}
    tick = 0.05

    async def run(stream: Stream, index: int, item: Item) -> None:
        async with gate:
            await stream.launch(index, item)

    while (elapsed := time.monotonic() - began) < seconds:
        bursting = elapsed >= burst_every and elapsed % burst_every < burst_seconds
        factor = BURST_FACTOR if bursting else 1
        for stream in streams:
            due[stream.name] += stream.rate * factor * tick
            while due[stream.name] >= 1:
                due[stream.name] -= 1
                index = count[stream.name]
                if stream.limit is not None and index >= stream.limit:
                    continue
                count[stream.name] += 1
                key, link = stream.key_of(index)
                item = Item(stream.name, key, link, time.monotonic())
                sent.items.append(item)
                task = asyncio.create_task(run(stream, index, item))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        await asyncio.sleep(tick)
    if tasks:
        await asyncio.gather(*tasks)
