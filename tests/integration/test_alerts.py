"""Alerts: who sees which, acknowledging, breaker and broken-connection alerts, WatchEvents."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import connections_service_pb2_grpc as pb_grpc
from sqlalchemy import text

from db.models import EmailConnection
from server.auth.caller import Caller, Role
from server.providers.errors import ProviderServerError
from server.resilience.alerts import BreakerAlerts, connection_broken, raise_alert
from server.resilience.breaker import BreakerConfig, BreakerRegistry
from tests.support import grpc_server
from tests.support.jobs import ahead_clock, rows


def _stub(server) -> pb_grpc.ConnectionsServiceStub:  # type: ignore[no-untyped-def]
    return pb_grpc.ConnectionsServiceStub(server.channel)


async def _alert(db, tenant_id, *, audience="tenant_admin", user=None, kind="permanent_failure"):  # type: ignore[no-untyped-def]
    async with db.unit_of_work(Caller(role=Role.SERVICE, tenant_id=tenant_id)) as session:
        return await raise_alert(
            session,
            tenant_id=tenant_id,
            audience=audience,
            usuario_id=user,
            kind=kind,
            severity="warning",
            message=f"{kind} for {user or 'admins'}",
            details={"titulo": "Teste", "entidade_tipo": "eventos_pendentes"},
        )


async def test_members_see_their_own_alerts_admins_the_tenants(
    server, db, make_tenant, make_caller
):
    tenant = await make_tenant(members=2)
    other = await make_tenant()
    for_admins = await _alert(db, tenant.id)
    for_member = await _alert(
        db, tenant.id, audience="user", user=tenant.members[0], kind="token_expiring"
    )
    await _alert(db, other.id)

    async def listed(caller: Caller, **kw: object) -> list[str]:
        response = await _stub(server).ListAlerts(
            pb.ListAlertsRequest(**kw), metadata=server.metadata(caller)
        )
        return [a.id for a in response.alerts]

    admin = make_caller(tenant, Role.ADMIN)
    assert set(await listed(admin)) == {str(for_admins), str(for_member)}
    assert await listed(make_caller(tenant, Role.MEMBER)) == [str(for_member)]
    assert await listed(make_caller(tenant, Role.MEMBER, user=tenant.members[1])) == []
    assert await listed(admin, kind=pb.ALERT_KIND_TOKEN_EXPIRING) == [str(for_member)]
    assert await listed(admin, min_severity=pb.ALERT_SEVERITY_CRITICAL) == []

    # A member cannot acknowledge the admins' alert (it does not exist for them).
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stub(server).AcknowledgeAlert(
            pb.AcknowledgeAlertRequest(id=str(for_admins)),
            metadata=server.metadata(make_caller(tenant, Role.MEMBER)),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    acked = await _stub(server).AcknowledgeAlert(
        pb.AcknowledgeAlertRequest(id=str(for_admins), request_id="ack-1"),
        metadata=server.metadata(admin),
    )
    assert acked.alert.HasField("reconhecido_em")
    assert acked.alert.reconhecido_por.usuario_id == str(tenant.admin_id)
    assert acked.alert.titulo == "Teste" and acked.alert.kind == pb.ALERT_KIND_PERMANENT_FAILURE
    again = await _stub(server).AcknowledgeAlert(
        pb.AcknowledgeAlertRequest(id=str(for_admins)), metadata=server.metadata(admin)
    )
    assert again.alert.reconhecido_em == acked.alert.reconhecido_em  # idempotent
    assert await listed(admin) == [str(for_member)]
    assert str(for_admins) in await listed(admin, incluir_reconhecidos=True)


async def test_open_circuit_alerts_super_admins_and_is_stored(server, db, owner_engine):
    clock = ahead_clock()
    provider = f"prov_{uuid.uuid4().hex[:6]}"
    breakers = BreakerRegistry(
        clock, {provider: BreakerConfig(2, 10.0)}, on_transition=BreakerAlerts(db)
    )
    for _ in range(2):
        with pytest.raises(ProviderServerError):
            async with breakers.guard(provider):
                raise ProviderServerError("down", provider=provider, status_code=502)
    await breakers.drain()
    state = await rows(
        owner_engine,
        "SELECT state, failures, opened_at FROM circuit_breakers WHERE provider = :p",
        p=provider,
    )
    assert [(s.state, s.failures) for s in state] == [("open", 2)]
    assert state[0].opened_at is not None

    response = await _stub(server).ListAlerts(
        pb.ListAlertsRequest(kind=pb.ALERT_KIND_CIRCUIT_OPEN, page_size=200),
        metadata=server.metadata(server.super_admin()),
    )
    mine = [a for a in response.alerts if a.entidade_id == provider]
    assert len(mine) == 1 and mine[0].severity == pb.ALERT_SEVERITY_CRITICAL

    clock.advance(10)
    async with breakers.guard(provider):  # the probe succeeds: closed, alert resolved
        pass
    await breakers.drain()
    state = await rows(
        owner_engine, "SELECT state FROM circuit_breakers WHERE provider = :p", p=provider
    )
    assert state[0].state == "closed"
    response = await _stub(server).ListAlerts(
        pb.ListAlertsRequest(
            kind=pb.ALERT_KIND_CIRCUIT_OPEN, incluir_resolvidos=True, page_size=200
        ),
        metadata=server.metadata(server.super_admin()),
    )
    resolved = [a for a in response.alerts if a.entidade_id == provider]
    assert resolved and resolved[0].HasField("resolvido_em")


async def test_a_provider_down_for_five_minutes_is_one_alert_in_every_replica(
    server, db, owner_engine
):
    clock = ahead_clock()
    provider = f"prov_{uuid.uuid4().hex[:6]}"
    # Two replicas, each with its own breaker, both seeing the outage.
    replicas = [
        BreakerRegistry(clock, {provider: BreakerConfig(2, 30.0)}, on_transition=BreakerAlerts(db))
        for _ in range(2)
    ]

    async def fail(breakers: BreakerRegistry) -> None:
        with pytest.raises(ProviderServerError):
            async with breakers.guard(provider):
                raise ProviderServerError("down", provider=provider, status_code=502)

    for breakers in replicas:
        for _ in range(2):
            await fail(breakers)
    for _ in range(10):  # 5 minutes: every 30 s each replica's half-open probe fails again
        clock.advance(30)
        for breakers in replicas:
            await fail(breakers)
    for breakers in replicas:
        await breakers.drain()

    async def mine(**kw: object) -> list[pb.Alert]:
        response = await _stub(server).ListAlerts(
            pb.ListAlertsRequest(kind=pb.ALERT_KIND_CIRCUIT_OPEN, page_size=200, **kw),
            metadata=server.metadata(server.super_admin()),
        )
        return [a for a in response.alerts if a.entidade_id == provider]

    alerts = await mine()
    assert len(alerts) == 1
    assert alerts[0].ocorrencias == 2 + 2 * 10  # each replica's opening, then every re-open
    assert alerts[0].ultima_ocorrencia.ToDatetime() > alerts[0].criado_em.ToDatetime()

    # Acknowledged while still down: the next failed probe raises nothing new.
    await _stub(server).AcknowledgeAlert(
        pb.AcknowledgeAlertRequest(id=alerts[0].id),
        metadata=server.metadata(server.super_admin()),
    )
    clock.advance(30)
    await fail(replicas[0])
    await replicas[0].drain()
    assert await mine() == []
    assert len(await mine(incluir_reconhecidos=True)) == 1
    audited = await rows(
        owner_engine,
        "SELECT action, count(*) AS n FROM audit_log WHERE organizacao_id IS NULL"
        " AND (entity_id = :p OR entity_id = :a) GROUP BY action",
        p=provider,
        a=alerts[0].id,
    )
    counts = {r.action: r.n for r in audited}
    # Every transition of both breakers (open, then half-open and open again every 30 s).
    assert counts["circuit.open"] == 2 + 2 * 10 + 1
    assert counts["circuit.half_open"] == 2 * 10 + 1
    assert counts["alert.acknowledged"] == 1


async def test_a_repeated_condition_counts_on_its_open_alert(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    first = await _alert(db, tenant.id, kind="retry_backlog")
    again = await _alert(db, tenant.id, kind="retry_backlog")
    other_user = await _alert(
        db, tenant.id, audience="user", user=tenant.admin_id, kind="retry_backlog"
    )
    assert first is not None and again is None and other_user not in (None, first)
    stored = await rows(
        owner_engine,
        "SELECT details->>'ocorrencias' AS n FROM alerts WHERE id = :i",
        i=first,
    )
    assert stored[0].n == "2"


async def test_connection_broken_marks_the_row_and_alerts_admin_and_owner(
    db, make_tenant, owner_engine
):
    tenant = await make_tenant()
    owner = tenant.member_id
    async with owner_engine.begin() as conn:
        conn_id = (
            await conn.execute(
                text(
                    "INSERT INTO conexoes_email (organizacao_id, usuario_id, tipo, email)"
                    " VALUES (:t, :u, 'gmail_oauth', 'x@example.com') RETURNING id"
                ),
                {"t": tenant.id, "u": owner},
            )
        ).scalar_one()
    for _ in range(2):  # the second time is deduplicated while the first is open
        async with db.unit_of_work(Caller(role=Role.SERVICE, tenant_id=tenant.id)) as session:
            await connection_broken(
                session,
                model=EmailConnection,
                connection_id=conn_id,
                tenant_id=tenant.id,
                owner_id=owner,
                connection_type="EMAIL_GMAIL_OAUTH",
                error="invalid_grant: refresh_token=1//abcdefghijklmnop revoked",
            )
    row = (
        await rows(
            owner_engine, "SELECT status, ultimo_erro FROM conexoes_email WHERE id = :i", i=conn_id
        )
    )[0]
    assert row.status == "error" and "abcdefghijklmnop" not in row.ultimo_erro
    alerts = await rows(
        owner_engine,
        "SELECT audience, usuario_id, kind FROM alerts WHERE organizacao_id = :t",
        t=tenant.id,
    )
    assert [(a.audience, a.usuario_id, a.kind) for a in alerts] == [
        ("tenant_admin", owner, "token_refresh_failed")
    ]
    audited = await rows(
        owner_engine,
        "SELECT actor_role, action, details->>'erro' AS erro FROM audit_log"
        " WHERE organizacao_id = :t AND entity_type = 'conexoes_email'",
        t=tenant.id,
    )
    assert [(a.actor_role, a.action) for a in audited] == [("service", "connection.marked_error")]
    assert "abcdefghijklmnop" not in audited[0].erro


async def _next_event(call) -> pb.ConnectionEvent:  # type: ignore[no-untyped-def]
    """The next event on the stream, past the heartbeats of a short idle interval."""
    async with asyncio.timeout(5):
        return await _skip_heartbeats(call)


async def _skip_heartbeats(call) -> pb.ConnectionEvent:  # type: ignore[no-untyped-def]
    while True:
        message = await call.read()
        if message.WhichOneof("kind") != "heartbeat":
            assert message.WhichOneof("kind") == "event"
            return message.event


async def test_watch_events_snapshot_then_events_then_heartbeats(
    database, db, make_tenant, make_caller, tmp_path
):
    tenant = await make_tenant(members=1)
    await _alert(db, tenant.id)  # already open when the stream starts
    settings = grpc_server.test_settings(
        database.owner_url, str(tmp_path), stream_heartbeat_seconds=0.3, worker_concurrency=0
    )
    async with grpc_server.running_server(settings) as srv:
        stub = _stub(srv)
        admin_call = stub.WatchEvents(  # the whole tenant: members' personal events too
            pb.WatchEventsRequest(scope=pb.OVERVIEW_SCOPE_TENANT),
            metadata=srv.metadata(make_caller(tenant, Role.ADMIN)),
        )
        member_call = stub.WatchEvents(
            pb.WatchEventsRequest(), metadata=srv.metadata(make_caller(tenant, Role.MEMBER))
        )
        first = await asyncio.wait_for(admin_call.read(), 5)
        assert first.WhichOneof("kind") == "snapshot"
        assert first.snapshot.alertas_abertos == 1
        assert (await asyncio.wait_for(member_call.read(), 5)).snapshot.alertas_abertos == 0

        other = await make_tenant()
        await _alert(db, other.id)  # someone else's: never shown
        admins_only = await _alert(db, tenant.id, kind="retry_backlog")  # a new condition
        members = await _alert(
            db, tenant.id, audience="user", user=tenant.member_id, kind="token_expiring"
        )

        seen = []
        for _ in range(2):
            event = await _next_event(admin_call)
            assert event.kind == pb.EVENT_KIND_ALERT
            assert event.organizacao_id == str(tenant.id)
            seen.append(event.payload["id"])
        assert seen == [str(admins_only), str(members)]
        assert (await _next_event(member_call)).payload["id"] == str(members)

        beat = await asyncio.wait_for(admin_call.read(), 5)
        assert beat.WhichOneof("kind") == "heartbeat" and beat.heartbeat.HasField("sent_at")

        with pytest.raises(grpc.aio.AioRpcError) as denied:
            tenant_scope = stub.WatchEvents(
                pb.WatchEventsRequest(scope=pb.OVERVIEW_SCOPE_TENANT),
                metadata=srv.metadata(make_caller(tenant, Role.MEMBER)),
            )
            await asyncio.wait_for(tenant_scope.read(), 5)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        admin_call.cancel()
        member_call.cancel()
