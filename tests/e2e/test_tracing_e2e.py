"""OpenTelemetry on: one trace from the sidecar's request through the gRPC call and its SQL
into the job it enqueued and the job's own statements, exported over OTLP/HTTP to a collector
played by a small loopback app."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from renove.conexoes.v1 import whatsapp_service_pb2 as pb
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.auth.caller import Role
from server.observability import tracing
from tests.conftest import MakeCaller, MakeTenant
from tests.support.databases import (
    MigratedDatabase,
    isolated_database_fixture,
    isolated_owner_engine_fixture,
)
from tests.support.whatsapp_stack import WAHA_HMAC_KEY, Stack, poll, whatsapp_stack
from webhooks_http import observability as sidecar_observability
from webhooks_http.runner import serve_in_background

database = isolated_database_fixture()
owner_engine = isolated_owner_engine_fixture()


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: bytes
    span_id: bytes
    parent_id: bytes
    outcome: str = ""  # rpc.grpc.status_code, on gRPC call spans


@dataclass
class Collector:
    spans: list[Span] = field(default_factory=list)

    async def traces(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        export = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        for resource in export.resource_spans:
            service = next(
                a.value.string_value for a in resource.resource.attributes
                if a.key == "service.name"
            )  # fmt: skip
            for scope in resource.scope_spans:
                for s in scope.spans:
                    outcome = next(
                        (a.value.string_value for a in s.attributes
                         if a.key == "rpc.grpc.status_code"), "",
                    )  # fmt: skip
                    self.spans.append(
                        Span(service, s.name, s.trace_id, s.span_id, s.parent_span_id, outcome)
                    )
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return Response(reply, media_type="application/x-protobuf")


@pytest.fixture(scope="module")
async def traced(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Stack, Collector]]:
    collector = Collector()
    app = Starlette(routes=[Route("/v1/traces", collector.traces, methods=["POST"])])
    async with serve_in_background(app) as otlp:
        tracing.configure("conexoes-server", otlp.url)
        sidecar_observability.configure_tracing(otlp.url)
        try:
            data = str(tmp_path_factory.mktemp("trace-e2e"))
            async with whatsapp_stack(database.owner_url, data) as stack:
                yield stack, collector
        finally:
            await asyncio.to_thread(tracing.shutdown)
            await asyncio.to_thread(sidecar_observability.shutdown_tracing)


async def test_one_trace_runs_from_the_sidecar_into_the_job(
    traced: tuple[Stack, Collector],
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    stack, collector = traced
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511977780001")
    message_id = f"false_5521933330001@c.us_{uuid.uuid4().hex[:16].upper()}"
    envelope = {
        "id": f"evt_{uuid.uuid4().hex}",
        "timestamp": int(time.time() * 1000),
        "event": "message",
        "session": name,
        "metadata": {"organizacao_id": str(tenant.id), "usuario_id": str(tenant.member_id)},
        "me": None,
        "payload": {
            "id": message_id,
            "timestamp": int(time.time()),
            "from": "5521933330001@c.us",
            "fromMe": False,
            "to": "5511977780001@c.us",
            "body": "rastreado",
            "hasMedia": False,
            "ack": 1,
        },
        "engine": "GOWS",
        "environment": {"version": "2026.7.1", "engine": "GOWS", "tier": "PLUS"},
    }
    body = json.dumps(envelope, separators=(",", ":")).encode()
    digest = hmac.new(WAHA_HMAC_KEY.encode(), body, hashlib.sha512).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-webhook-hmac": digest,
        "x-webhook-hmac-algorithm": "sha512",
    }
    sent = await stack.http.post(
        f"{stack.sidecar_url}/webhooks/waha/{tenant.id}", content=body, headers=headers
    )
    assert sent.status_code == 200

    async def processed() -> int | None:
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
            )
            return (
                await conn.scalar(
                    text("SELECT count(*) FROM conversas WHERE external_id = :e"), {"e": message_id}
                )
                or None
            )

    await poll(processed)

    async def exported() -> Span | None:
        # The exporter posts from its own thread (blocking HTTP): flush off the loop that
        # serves the collector.
        await asyncio.to_thread(tracing.flush)
        await asyncio.to_thread(sidecar_observability.flush_tracing)
        found = [s for s in collector.spans if s.name == "job waha_event"]
        return found[-1] if found else None

    job = await poll(exported)
    trace = [s for s in collector.spans if s.trace_id == job.trace_id]
    by_id = {s.span_id: s for s in trace}
    # job <- gRPC call <- sidecar request, all in one trace
    call = by_id[job.parent_id]
    assert call.name == "grpc renove.conexoes.v1.WebhookIngressService/DeliverWahaWebhook"
    assert call.service == "conexoes-server"
    edge = by_id[call.parent_id]
    assert edge.service == "conexoes-sidecar" and edge.name == "HTTP POST"
    statements = [s for s in trace if s.name.startswith("db ")]
    assert any(s.parent_id == call.span_id for s in statements)
    assert any(s.parent_id == job.span_id for s in statements)


async def test_a_stream_is_one_span_with_its_outcome(
    traced: tuple[Stack, Collector], make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    stack, collector = traced
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    await stack.connect(member, "5511977780002")
    name = "grpc renove.conexoes.v1.WhatsAppService/WatchWhatsAppStatus"
    before = {s.span_id for s in collector.spans if s.name == name}

    call = stack.stub().WatchWhatsAppStatus(
        pb.WatchWhatsAppStatusRequest(), metadata=stack.md(member)
    )
    first = await call.read()
    assert first.snapshot.sessions[0].status == pb.WAHA_SESSION_STATUS_CONNECTED
    call.cancel()

    async def ended() -> list[Span] | None:
        await asyncio.to_thread(tracing.flush)
        found = [s for s in collector.spans if s.name == name and s.span_id not in before]
        return found or None

    # One span for the stream's life (not one per message), closed with how it ended; the
    # snapshot's statements are its children.
    (stream,) = await poll(ended)
    assert stream.outcome == "CANCELLED"
    assert any(s.name.startswith("db ") and s.parent_id == stream.span_id for s in collector.spans)
