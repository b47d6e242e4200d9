"""What an operator sees after real traffic: /metrics on the sidecar and the server, JSON log
lines sharing one request id from the sidecar into the job, and the KPI RPC's uptime.

One stack for the module (WAHA sandbox -> sidecar -> gRPC server with its worker ->
PostgreSQL); counters are read before and after each step, since collectors live per process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from google.protobuf import timestamp_pb2
from prometheus_client.parser import text_string_to_metric_families
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import kpis_service_pb2 as kpb
from renove.conexoes.v1 import kpis_service_pb2_grpc as kpb_grpc
from renove.conexoes.v1 import outbound_webhooks_service_pb2 as opb
from renove.conexoes.v1 import outbound_webhooks_service_pb2_grpc as opb_grpc
from renove.conexoes.v1 import resources_pb2 as rpb
from renove.conexoes.v1 import whatsapp_service_pb2 as pb
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Role
from server.observability.logs import ContextFilter, JsonFormatter
from tests.conftest import MakeCaller, MakeTenant
from tests.support.databases import (
    MigratedDatabase,
    isolated_database_fixture,
    isolated_owner_engine_fixture,
)
from tests.support.whatsapp_stack import WAHA_HMAC_KEY, Stack, poll, whatsapp_stack

database = isolated_database_fixture()
owner_engine = isolated_owner_engine_fixture()
WATCHED_LOGGERS = ("conexoes.access", "conexoes.jobs", "webhooks_http.access")


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    data = str(tmp_path_factory.mktemp("obs-e2e"))
    async with whatsapp_stack(
        database.owner_url,
        data,
        metrics_addr="127.0.0.1:0",
        metrics_sample_seconds=0.1,
        webhook_allow_private_targets=True,  # an outbound webhook endpoint on loopback
    ) as running:
        yield running


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, object]] = []
        self.setFormatter(JsonFormatter())
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def log_lines() -> Iterator[_Lines]:
    handler = _Lines()
    loggers = [logging.getLogger(name) for name in WATCHED_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)  # what CONEXOES_ACCESS_LOG=all does
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


async def _scrape(stack: Stack, url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body = (await stack.http.get(url)).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def _value(
    scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in scrape.items() if n == name and wanted <= ls)


def _server_metrics(stack: Stack) -> str:
    listener = stack.server.app.observability.listener
    assert listener is not None
    return f"http://127.0.0.1:{listener.port}/metrics"


def _signed(envelope: dict[str, object], key: str = WAHA_HMAC_KEY) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(envelope, separators=(",", ":")).encode()
    digest = hmac.new(key.encode(), body, hashlib.sha512).hexdigest()
    return body, {
        "content-type": "application/json",
        "x-webhook-hmac": digest,
        "x-webhook-hmac-algorithm": "sha512",
    }


def _envelope(
    session: str, tenant: uuid.UUID, user: uuid.UUID, event: str, payload: dict[str, object]
) -> dict[str, object]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "timestamp": int(time.time() * 1000),
        "event": event,
        "session": session,
        "metadata": {"organizacao_id": str(tenant), "usuario_id": str(user)},
        "me": None,
        "payload": payload,
        "engine": "GOWS",
        "environment": {"version": "2026.7.1", "engine": "GOWS", "tier": "PLUS"},
    }


def _inbound(to: str, sender: str, body: str) -> dict[str, object]:
    return {
        "id": f"false_{sender}@c.us_{uuid.uuid4().hex[:16].upper()}",
        "timestamp": int(time.time()),
        "from": f"{sender}@c.us",
        "fromMe": False,
        "to": f"{to}@c.us",
        "body": body,
        "hasMedia": False,
        "ack": 1,
    }


async def test_a_webhook_and_its_job_share_one_request_id_and_move_the_counters(
    stack: Stack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
    log_lines: _Lines,
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511977770001")
    url = f"{stack.sidecar_url}/webhooks/waha/{tenant.id}"
    route = "/webhooks/waha/{tenant_id}"
    server_url, sidecar_url = _server_metrics(stack), f"{stack.sidecar_url}/metrics"
    before_server, before_edge = await _scrape(stack, server_url), await _scrape(stack, sidecar_url)

    request_id = f"obs-{uuid.uuid4().hex[:12]}"
    message = _inbound("5511977770001", "5521944440001", "quero saber o preço")
    body, headers = _signed(_envelope(name, tenant.id, tenant.member_id, "message", message))
    tagged = {**headers, "x-request-id": request_id}
    accepted = await stack.http.post(url, content=body, headers=tagged)
    assert accepted.status_code == 200
    assert accepted.headers["x-request-id"] == request_id
    duplicate = await stack.http.post(url, content=body, headers=headers)
    assert duplicate.status_code == 200 and duplicate.headers["x-request-id"] != request_id
    forged_body, forged = _signed(
        _envelope(name, tenant.id, tenant.member_id, "message", message), key="wrong-key"
    )
    assert (await stack.http.post(url, content=forged_body, headers=forged)).status_code in (
        401,
        403,
    )

    async def stored() -> int | None:
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
            )
            return (
                await conn.scalar(
                    text("SELECT count(*) FROM conversas WHERE external_id = :e"),
                    {"e": message["id"]},
                )
                or None
            )

    assert await poll(stored) == 1

    async def job_line() -> dict[str, object] | None:
        found = [
            line
            for line in log_lines.lines
            if line["logger"] == "conexoes.jobs" and line.get("request_id") == request_id
        ]
        return found[0] if found else None

    job = await poll(job_line)
    assert job["rpc"] == "waha_event" and job["outcome"] == "completed"
    assert job["tenant"] == str(tenant.id) and isinstance(job["duration_ms"], float)
    (delivery,) = [
        line
        for line in log_lines.lines
        if line["logger"] == "conexoes.access" and line.get("request_id") == request_id
    ]
    assert delivery["rpc"] == "DeliverWahaWebhook" and delivery["outcome"] == "OK"
    edge = [
        line
        for line in log_lines.lines
        if line["logger"] == "webhooks_http.access" and line.get("request_id") == request_id
    ]
    assert edge and edge[0]["route"] == route and edge[0]["status"] == 200

    after_server, after_edge = await _scrape(stack, server_url), await _scrape(stack, sidecar_url)

    def moved(after: dict, before: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
        return _value(after, name, **labels) - _value(before, name, **labels)

    webhooks = "conexoes_webhooks_total"
    assert moved(after_server, before_server, webhooks, provider="waha", outcome="accepted") == 1
    assert moved(after_server, before_server, webhooks, provider="waha", outcome="duplicate") == 1
    assert (
        moved(after_server, before_server, webhooks, provider="waha", outcome="unauthenticated")
        == 1
    )
    handled = "grpc_server_handled_total"
    assert (
        moved(
            after_server, before_server, handled, grpc_method="DeliverWahaWebhook", grpc_code="OK"
        )
        == 3
    )
    assert (
        moved(
            after_server,
            before_server,
            "grpc_server_handling_seconds_count",
            grpc_method="DeliverWahaWebhook",
        )
        == 3
    )
    assert (
        moved(
            after_server,
            before_server,
            "conexoes_job_attempts_total",
            operation="waha_event",
            outcome="completed",
        )
        >= 1
    )
    assert (
        moved(
            after_server,
            before_server,
            "conexoes_job_latency_seconds_count",
            operation="waha_event",
        )
        >= 1
    )
    assert (
        moved(
            after_edge, before_edge, "http_requests_total", route=route, method="POST", status="200"
        )
        == 2
    )
    refused = sum(
        moved(after_edge, before_edge, "http_requests_total", route=route, status=code)
        for code in ("401", "403")
    )
    assert refused == 1
    assert moved(after_edge, before_edge, "http_request_body_bytes_sum", route=route) == 3 * len(
        body
    )


async def test_a_recorded_change_and_its_webhook_deliveries_share_the_request_id(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=1)
    member, admin = make_caller(tenant, Role.MEMBER), make_caller(tenant, Role.ADMIN)
    await opb_grpc.OutboundWebhooksServiceStub(stack.server.channel).CreateOutboundWebhook(
        opb.CreateOutboundWebhookRequest(
            webhook=opb.OutboundWebhook(
                url="http://127.0.0.1:9/ganchos",  # nothing listens: it stays queued
                eventos=[cpb.EVENT_KIND_MESSAGE_RECEIVED],
            )
        ),
        metadata=stack.md(admin),
    )
    name = await stack.connect(member, "5511977770004")
    request_id = f"obs-{uuid.uuid4().hex[:12]}"
    message = _inbound("5511977770004", "5521944440004", "chegou pelo gancho?")
    body, headers = _signed(_envelope(name, tenant.id, tenant.member_id, "message", message))
    sent = await stack.http.post(
        f"{stack.sidecar_url}/webhooks/waha/{tenant.id}",
        content=body,
        headers={**headers, "x-request-id": request_id},
    )
    assert sent.status_code == 200

    async def deliveries() -> list[tuple[str, str | None]] | None:
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
            )
            rows = await conn.execute(
                text(
                    "SELECT operacao, request_id FROM eventos_pendentes"
                    " WHERE organizacao_id = :t AND operacao = 'outbound_webhook'"
                ),
                {"t": tenant.id},
            )
            found = [(row.operacao, row.request_id) for row in rows]
        return found or None

    # The message's job records MESSAGE_RECEIVED; its delivery to the endpoint carries the
    # webhook's request id, as the job itself did.
    assert await poll(deliveries) == [("outbound_webhook", request_id)]


async def test_a_failing_provider_shows_in_codes_retries_and_gauges(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=2)
    sender = make_caller(tenant, Role.MEMBER, user=tenant.members[0])
    other = make_caller(tenant, Role.MEMBER, user=tenant.members[1])
    await stack.connect(sender, "5511977770002")
    server_url = _server_metrics(stack)
    before = await _scrape(stack, server_url)

    # WAHA answers 503 to the next sendText: the queued send fails once and is retried.
    await stack.control("faults", {"status": 503, "count": 1, "path": "/api/sendText"})
    await stack.stub().SendWhatsAppMessage(
        pb.SendWhatsAppMessageRequest(to="+5511955550009", text="vai falhar uma vez"),
        metadata=stack.md(sender),
    )

    async def retried() -> float | None:
        scrape = await _scrape(stack, server_url)
        labels = {"operation": "whatsapp_send", "outcome": "retry"}
        name = "conexoes_job_attempts_total"
        delta = _value(scrape, name, **labels) - _value(before, name, **labels)
        return delta or None

    assert await poll(retried) == 1

    # And an RPC that needs WAHA while it is down answers UNAVAILABLE, counted by code.
    await stack.control("faults", {"status": 503, "count": 1})
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stack.start(other)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    await stack.http.delete(f"{stack.waha_url}/_control/faults")
    after = await _scrape(stack, server_url)
    unavailable = {"grpc_method": "StartWhatsAppSession", "grpc_code": "UNAVAILABLE"}
    handled = "grpc_server_handled_total"
    assert _value(after, handled, **unavailable) - _value(before, handled, **unavailable) == 1

    # The sampled gauges see the tenant's connected sessions (no tenant label anywhere).
    async def connected() -> float | None:
        scrape = await _scrape(stack, server_url)
        return _value(scrape, "conexoes_connections", type="whatsapp", status="connected") or None

    assert await poll(connected) >= 1
    scrape = await _scrape(stack, server_url)
    forbidden = {"tenant", "tenant_id", "organizacao_id", "user", "usuario_id"}
    assert not [key for key in scrape if any(label in forbidden for label, _ in key[1])]


async def test_the_breaker_gauge_reads_the_state_stored_by_any_process(
    stack: Stack, owner_engine: AsyncEngine
) -> None:
    server_url = _server_metrics(stack)

    async def state_is(level: float) -> bool | None:
        scrape = await _scrape(stack, server_url)
        return (
            True
            if _value(scrape, "conexoes_breaker_state", breaker="google_calendar") == level
            else None
        )

    assert await poll(lambda: state_is(0.0))
    # Another replica (a worker) opened the Google Calendar breaker: this server never
    # called Google, yet its scrape reads what the database holds.
    store = text(
        "INSERT INTO circuit_breakers (provider, state, failures, opened_at, updated_at)"
        " VALUES ('google_calendar', :state, 5, now(), now())"
        " ON CONFLICT (provider) DO UPDATE SET state = :state, updated_at = now()"
    )
    async with owner_engine.begin() as conn:
        await conn.execute(store, {"state": "open"})
    try:
        assert await poll(lambda: state_is(2.0))
        async with owner_engine.begin() as conn:
            await conn.execute(store, {"state": "half_open"})
        assert await poll(lambda: state_is(1.0))
    finally:
        async with owner_engine.begin() as conn:
            await conn.execute(store, {"state": "closed"})
    assert await poll(lambda: state_is(0.0))


async def test_kpis_report_the_uptime_of_a_connection_down_for_a_known_interval(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=1)
    member, admin = make_caller(tenant, Role.MEMBER), make_caller(tenant, Role.ADMIN)
    name = await stack.connect(member, "5511977770003")
    up_at = time.time()
    url = f"{stack.sidecar_url}/webhooks/waha/{tenant.id}"

    async def status_webhook(waha_status: str) -> None:
        body, headers = _signed(
            _envelope(name, tenant.id, tenant.member_id, "session.status", {"status": waha_status})
        )
        assert (await stack.http.post(url, content=body, headers=headers)).status_code == 200

    # WAHA refuses calls meanwhile, so the restart a FAILED session gets cannot end the
    # downtime before the test does.
    await stack.control("faults", {"status": 503, "count": 1000})
    await status_webhook("FAILED")
    await stack.wait_status(member, pb.WAHA_SESSION_STATUS_FAILED)
    down_at = time.time()
    await asyncio.sleep(1.5)  # the downtime being measured: it has to last a while
    await stack.http.delete(f"{stack.waha_url}/_control/faults")
    await status_webhook("WORKING")
    await stack.wait_status(member, pb.WAHA_SESSION_STATUS_CONNECTED)
    back_at = time.time()
    end = time.time() + 0.5

    stub = kpb_grpc.KpisServiceStub(stack.server.channel)
    period_start = timestamp_pb2.Timestamp()
    period_start.FromSeconds(int(up_at) - 60)
    period_end = timestamp_pb2.Timestamp()
    period_end.FromNanoseconds(int(end * 1e9))
    kpis = await stub.GetConnectionKpis(
        kpb.GetConnectionKpisRequest(
            start_time=period_start,
            end_time=period_end,
            connection_type=rpb.CONNECTION_TYPE_WHATSAPP,
        ),
        metadata=stack.md(admin),
    )
    (connection,) = kpis.connections
    true_down = back_at - down_at
    assert connection.status == "connected"
    assert connection.disconnections == 1 and connection.reconnections == 1
    assert abs(connection.mean_reconnection_seconds - true_down) < 1.0
    assert abs((connection.observed_seconds - connection.up_seconds) - true_down) < 1.0
    assert abs(connection.observed_seconds - (end - up_at)) < 1.0
    (whatsapp,) = kpis.types
    assert whatsapp.connections == 1 and whatsapp.webhooks_accepted >= 2
    assert whatsapp.webhook_delivery_rate > 0

    history = await stub.ListConnectionStatusHistory(
        kpb.ListConnectionStatusHistoryRequest(connection_id=connection.connection_id),
        metadata=stack.md(admin),
    )
    statuses = [change.status for change in history.changes]
    assert statuses[:2] == ["connected", "failed"] and "qr_pending" in statuses

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetConnectionKpis(kpb.GetConnectionKpisRequest(), metadata=stack.md(admin))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as member_refused:
        await stub.GetConnectionKpis(
            kpb.GetConnectionKpisRequest(start_time=period_start), metadata=stack.md(member)
        )
    assert member_refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert dt.datetime.now(dt.UTC).timestamp() >= end - 1
