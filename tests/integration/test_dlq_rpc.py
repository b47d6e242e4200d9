"""The dead-letter queue, integration health, breakers and alerts over real gRPC."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import connections_service_pb2_grpc as pb_grpc
from sqlalchemy import text

from server.auth.caller import Role
from server.providers.errors import ProviderRejected
from server.resilience.breaker import BreakerRegistry
from server.resilience.jobs import Job, JobRegistry
from server.resilience.operations import Operation
from server.resilience.policies import POLICIES
from server.resilience.worker import Worker
from tests.support.jobs import add_job, ahead_clock, job_row, rows, unique_op


def _stub(server) -> pb_grpc.ConnectionsServiceStub:  # type: ignore[no-untyped-def]
    return pb_grpc.ConnectionsServiceStub(server.channel)


def _reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


class Flaky:
    """A handler that rejects until told to accept."""

    def __init__(self) -> None:
        self.accept = False
        self.calls: list[tuple[uuid.UUID, int]] = []

    async def __call__(self, job: Job) -> None:
        self.calls.append((job.id, job.attempt))
        if not self.accept:
            raise ProviderRejected("invalid pixel", provider="meta_capi", status_code=400)


async def _dead_letter(db, tenant, count=1):  # type: ignore[no-untyped-def]
    clock = ahead_clock()
    handler = Flaky()
    registry = JobRegistry()
    op = unique_op("dlq")
    registry.register(Operation(op, POLICIES["capi_event"]), handler)
    ids = [
        await add_job(db, tenant.id, op, max_attempts=5, tipo="capi_event", payload={"n": i})
        for i in range(count)
    ]
    worker = Worker(db, registry, BreakerRegistry(clock, {}), clock, concurrency=8)
    await worker.run_once()
    return ids, handler, worker


async def test_dead_lettered_job_is_listed_retried_and_succeeds(
    server, db, make_tenant, make_caller, owner_engine
):
    tenant = await make_tenant()
    admin = server.metadata(make_caller(tenant, Role.ADMIN))
    (job_id,), handler, worker = await _dead_letter(db, tenant)

    listed = await _stub(server).ListFailedEvents(pb.ListFailedEventsRequest(), metadata=admin)
    assert [e.id for e in listed.events] == [str(job_id)]
    event = listed.events[0]
    assert event.status == pb.QUEUED_EVENT_STATUS_FAILED
    assert (event.tentativas, event.max_tentativas, event.tipo) == (1, 5, "capi_event")
    assert "ProviderRejected" in event.ultimo_erro
    assert listed.total_size == 1

    member = server.metadata(make_caller(tenant, Role.MEMBER))
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await _stub(server).ListFailedEvents(pb.ListFailedEventsRequest(), metadata=member)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

    request = pb.RetryFailedEventRequest(id=str(job_id), request_id=f"retry-{job_id}")
    first = await _stub(server).RetryFailedEvent(request, metadata=admin)
    again = await _stub(server).RetryFailedEvent(request, metadata=admin)  # replayed
    assert first == again
    assert first.event.status == pb.QUEUED_EVENT_STATUS_PENDING
    # A final error stopped it after one attempt: the rest of its budget is still there.
    assert (first.event.tentativas, first.event.max_tentativas) == (1, 5)
    audits = await rows(
        owner_engine,
        "SELECT actor_role FROM audit_log WHERE action = 'job.retried' AND entity_id = :id",
        id=str(job_id),
    )
    assert [a.actor_role for a in audits] == ["admin"]

    handler.accept = True
    assert await worker.run_once() == 1
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas) == ("completed", 2)
    assert handler.calls == [(job_id, 1), (job_id, 2)]

    with pytest.raises(grpc.aio.AioRpcError) as not_failed:
        await _stub(server).RetryFailedEvent(
            pb.RetryFailedEventRequest(id=str(job_id)), metadata=admin
        )
    assert not_failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(not_failed.value) == "EVENT_NOT_FAILED"


async def test_retry_with_reset_gives_a_full_budget_and_discard_is_final(
    server, db, make_tenant, make_caller, owner_engine
):
    tenant = await make_tenant()
    admin = server.metadata(make_caller(tenant, Role.ADMIN))
    (kept, dropped), _, _ = await _dead_letter(db, tenant, count=2)

    reset = await _stub(server).RetryFailedEvent(
        pb.RetryFailedEventRequest(id=str(kept), reset_tentativas=True), metadata=admin
    )
    assert (reset.event.tentativas, reset.event.max_tentativas) == (0, 5)

    discarded = await _stub(server).DiscardFailedEvent(
        pb.DiscardFailedEventRequest(id=str(dropped), motivo="pixel removido"), metadata=admin
    )
    assert discarded.event.status == pb.QUEUED_EVENT_STATUS_DISCARDED
    assert (await job_row(owner_engine, dropped)).status == "discarded"
    audit = await rows(
        owner_engine,
        "SELECT details->>'motivo' AS motivo FROM audit_log"
        " WHERE action = 'job.discarded' AND entity_id = :id",
        id=str(dropped),
    )
    assert [a.motivo for a in audit] == ["pixel removido"]

    listed = await _stub(server).ListFailedEvents(
        pb.ListFailedEventsRequest(status=pb.QUEUED_EVENT_STATUS_DISCARDED), metadata=admin
    )
    assert [e.id for e in listed.events] == [str(dropped)]

    for missing in (str(uuid.uuid4()), str(dropped)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _stub(server).DiscardFailedEvent(
                pb.DiscardFailedEventRequest(id=missing), metadata=admin
            )
        expected = "EVENT_NOT_FOUND" if missing != str(dropped) else "EVENT_NOT_FAILED"
        assert _reason(err.value) == expected

    other = await make_tenant()  # another tenant's admin cannot see or touch it
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stub(server).RetryFailedEvent(
            pb.RetryFailedEventRequest(id=str(kept)),
            metadata=server.metadata(make_caller(other, Role.ADMIN)),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_failed_events_page_and_filter(server, db, make_tenant, make_caller):
    tenant = await make_tenant()
    admin = server.metadata(make_caller(tenant, Role.ADMIN))
    ids, _, _ = await _dead_letter(db, tenant, count=5)
    seen: list[str] = []
    token = ""
    while True:
        page = await _stub(server).ListFailedEvents(
            pb.ListFailedEventsRequest(page_size=2, page_token=token), metadata=admin
        )
        assert len(page.events) <= 2 and page.total_size == 5
        seen += [e.id for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(str(i) for i in ids) and len(seen) == 5
    none = await _stub(server).ListFailedEvents(
        pb.ListFailedEventsRequest(tipo="audience_sync"), metadata=admin
    )
    assert list(none.events) == []


async def test_integration_health_counts_the_last_day(
    server, make_tenant, make_caller, owner_engine
):
    tenant = await make_tenant()
    jobs = [
        ("capi_event", "completed", 1, 0),
        ("capi_event", "completed", 3, 1),
        ("capi_event", "failed", 5, 2),
        ("capi_event", "pending", 2, 0),
        ("capi_event", "failed", 5, 30),  # hours ago: outside the window
        ("audience_sync", "pending", 0, 0),
    ]
    async with owner_engine.begin() as conn:
        for tipo, status, attempts, age in jobs:
            await conn.execute(
                text(
                    "INSERT INTO eventos_pendentes (organizacao_id, tipo, operacao, destino,"
                    " payload, tentativas, status, criado_em, proxima_tentativa)"
                    " VALUES (:t, :tipo, :tipo, '', '{}', :n, :s,"
                    " now() - make_interval(hours => :age), now() + interval '1 day')"
                ),
                {"t": tenant.id, "tipo": tipo, "n": attempts, "s": status, "age": age},
            )
    health = await _stub(server).GetIntegrationHealth(
        pb.GetIntegrationHealthRequest(),
        metadata=server.metadata(make_caller(tenant, Role.ADMIN)),
    )
    by_tipo = {h.tipo: h for h in health.tipos}
    assert set(by_tipo) == {"capi_event", "audience_sync"}
    capi = by_tipo["capi_event"]
    assert (capi.pendentes, capi.falhas_permanentes, capi.sucesso) == (1, 1, 2)
    assert capi.media_tentativas == pytest.approx(2.0)
    assert capi.HasField("ultima_falha")
    assert (by_tipo["audience_sync"].pendentes, by_tipo["audience_sync"].sucesso) == (1, 0)
    assert health.total_pendentes == 1  # pending after a failed attempt: the retry queue
    window = health.window_end.ToSeconds() - health.window_start.ToSeconds()
    assert window == 24 * 3600


async def test_circuit_breakers_are_listed(server, make_tenant, make_caller):
    tenant = await make_tenant()
    response = await _stub(server).ListCircuitBreakers(
        pb.ListCircuitBreakersRequest(), metadata=server.metadata(make_caller(tenant, Role.ADMIN))
    )
    by_provider = {b.provider: b for b in response.circuit_breakers}
    assert {
        "meta_capi",
        "meta_audiences",
        "waha",
        "google_calendar",
        "gmail",
        "instagram",
        "smtp",
    } <= set(by_provider)
    capi = by_provider["meta_capi"]
    assert (capi.failure_threshold, capi.reset_timeout.seconds) == (5, 60)
    assert by_provider["meta_audiences"].reset_timeout.seconds == 120
