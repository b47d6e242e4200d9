"""Outbound webhooks end to end: an admin registers an endpoint, a recorded change is POSTed
to it signed, retried with the policy while it answers 500, dead-lettered and retried by the
admin when it refuses; private targets refused unless allowed for development."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import connections_service_pb2_grpc as cpb_grpc
from renove.conexoes.v1 import outbound_webhooks_service_pb2 as pb
from renove.conexoes.v1 import outbound_webhooks_service_pb2_grpc as pb_grpc
from sqlalchemy import select

from db.models import OutboxEvent, PendingEvent
from server.auth.caller import Caller
from server.outbound_webhooks.targets import target_problems
from server.outbox import record_change
from server.resilience.clock import FakeClock
from tests.conftest import MigratedDatabase
from tests.support.crm_core import CrmCore, DirectoryTenant
from tests.support.databases import isolated_database_fixture, isolated_owner_engine_fixture
from tests.support.dns_hosts import Hosts, hosts_dns
from tests.support.grpc_server import RunningServer, running_server
from tests.support.grpc_server import test_settings as settings_for
from tests.support.jobs import ahead_clock
from tests.support.webhook_receiver import Received, webhook_receiver
from tests.support.whatsapp_stack import poll

# Other servers' workers deliver outbound webhooks too: this module's jobs stay on its own DB.
database = isolated_database_fixture()
owner_engine = isolated_owner_engine_fixture()


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return ahead_clock()


@pytest.fixture(scope="module")
async def hosts() -> AsyncIterator[Hosts]:
    async with hosts_dns(Hosts()) as running:
        yield running


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase,
    tmp_path_factory: pytest.TempPathFactory,
    clock: FakeClock,
    hosts: Hosts,
) -> AsyncIterator[RunningServer]:
    settings = settings_for(
        database.owner_url,
        str(tmp_path_factory.mktemp("webhooks")),
        webhook_allow_private_targets=True,
        dns_nameservers=(hosts.nameserver,),
        worker_poll_seconds=0.05,
    )
    async with running_server(settings, clock=clock) as running:
        yield running


def verified(secret: str, received: Received) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received.headers["x-renove-signature"])


async def register(
    server: RunningServer, admin: Caller, url: str, kinds: list[int]
) -> pb.CreateOutboundWebhookResponse:
    stub = pb_grpc.OutboundWebhooksServiceStub(server.channel)
    response: pb.CreateOutboundWebhookResponse = await stub.CreateOutboundWebhook(
        pb.CreateOutboundWebhookRequest(webhook=pb.OutboundWebhook(url=url, eventos=kinds)),
        metadata=server.metadata(admin),
    )
    return response


async def change(server: RunningServer, tenant: DirectoryTenant, **payload: Any) -> None:
    async with server.deps.db.unit_of_work(tenant.core) as session:
        await record_change(session, tenant.id, "CONTACT_CHANGED", payload)


async def job_of(server: RunningServer, tenant: DirectoryTenant) -> PendingEvent | None:
    async with server.deps.db.unit_of_work(tenant.core) as session:
        job: PendingEvent | None = await session.scalar(
            select(PendingEvent).where(PendingEvent.tipo == "webhook_saida")
        )
        return job


async def test_an_endpoint_answering_500_twice_gets_the_same_signed_event_each_retry(
    stack: RunningServer, clock: FakeClock
) -> None:
    tenant = await CrmCore(stack).sync_new_tenant(sellers=0)
    async with webhook_receiver([500, 500, 200]) as receiver:
        created = await register(
            stack, tenant.admin, receiver.url, [cpb.EVENT_KIND_CONTACT_CHANGED]
        )
        assert created.secret.startswith("whsec_") and created.webhook.ativo
        await change(stack, tenant, contato_id="c-1", created=True)
        for attempt in (1, 2):
            await receiver.wait_for(attempt)

            async def waiting(n: int = attempt) -> bool | None:
                job = await job_of(stack, tenant)
                return True if job and job.status == "pending" and job.tentativas == n else None

            await poll(waiting)
            clock.advance(120)  # past the policy's backoff (5 s, then 10 s, plus jitter)
        got = await receiver.wait_for(3)

        async def completed() -> bool | None:
            job = await job_of(stack, tenant)
            return True if job and job.status == "completed" else None

        await poll(completed)
    assert len(got) == 3
    assert len({r.body for r in got}) == 1
    assert len({r.headers["x-renove-event-id"] for r in got}) == 1
    assert all(verified(created.secret, r) for r in got)
    assert [r.headers["x-renove-delivery-attempt"] for r in got] == ["1", "2", "3"]
    document = json.loads(got[0].body)
    assert document["id"] == got[0].headers["x-renove-event-id"]
    assert document["kind"] == "CONTACT_CHANGED" and document["sequence"] == 1
    assert document["payload"] == {"contato_id": "c-1", "created": True}
    assert document["organizacao_id"] == str(tenant.id)


async def test_a_later_change_waits_while_an_earlier_one_is_retried(
    stack: RunningServer, clock: FakeClock
) -> None:
    tenant = await CrmCore(stack).sync_new_tenant(sellers=0)
    async with webhook_receiver([503, 200]) as receiver:
        await register(stack, tenant.admin, receiver.url, [cpb.EVENT_KIND_CONTACT_CHANGED])
        await change(stack, tenant, contato_id="first")
        await receiver.wait_for(1)
        await change(stack, tenant, contato_id="second")

        async def second_waiting() -> bool | None:
            async with stack.deps.db.unit_of_work(tenant.core) as session:
                jobs = list(
                    await session.scalars(
                        select(PendingEvent).where(PendingEvent.tipo == "webhook_saida")
                    )
                )
            # Postponed (due later than now) behind the first, without spending an attempt.
            waiting = [
                j
                for j in jobs
                if j.payload["sequence"] == 2
                and j.status == "pending"
                and j.tentativas == 0
                and j.proxima_tentativa > clock.now()
            ]
            return True if waiting else None

        await poll(second_waiting)
        # Nothing of the second change arrived while the first one waits for its retry.
        assert len(receiver.received) == 1
        clock.advance(120)
        got = await receiver.wait_for(3)
    assert [json.loads(r.body)["payload"]["contato_id"] for r in got] == [
        "first",
        "first",
        "second",
    ]


async def test_a_refusing_endpoint_is_dead_lettered_and_retried_by_the_admin(
    stack: RunningServer,
) -> None:
    tenant = await CrmCore(stack).sync_new_tenant(sellers=0)
    async with webhook_receiver([400, 200]) as receiver:
        created = await register(stack, tenant.admin, receiver.url, [])
        await change(stack, tenant, contato_id="c-2")

        async def dead() -> PendingEvent | None:
            job = await job_of(stack, tenant)
            return job if job and job.status == "failed" else None

        job = await poll(dead)
        assert job.tentativas == 1 and "HTTP 400" in (job.ultimo_erro or "")
        # The dead letter's alert is on the feed, but not delivered to the endpoint that
        # failed (each failure would feed it one more delivery).
        async with stack.deps.db.unit_of_work(tenant.core) as session:
            kinds = list(
                await session.scalars(select(OutboxEvent.tipo).order_by(OutboxEvent.sequencia))
            )
            jobs = list(
                await session.scalars(
                    select(PendingEvent.id).where(PendingEvent.tipo == "webhook_saida")
                )
            )
        assert kinds == ["CONTACT_CHANGED", "ALERT"] and len(jobs) == 1
        connections = cpb_grpc.ConnectionsServiceStub(stack.channel)
        await connections.RetryFailedEvent(
            cpb.RetryFailedEventRequest(id=str(job.id)), metadata=stack.metadata(tenant.admin)
        )
        got = await receiver.wait_for(2)
    assert got[0].body == got[1].body and verified(created.secret, got[1])


async def test_a_delivery_connects_to_the_address_it_checked_not_a_second_answer(
    stack: RunningServer, hosts: Hosts
) -> None:
    tenant = await CrmCore(stack).sync_new_tenant(sellers=0)
    async with webhook_receiver([200]) as receiver:
        port = receiver.url.split(":")[-1].split("/")[0]
        hosts.point("rebind.cliente.test", "127.0.0.1")
        created = await register(stack, tenant.admin, f"http://rebind.cliente.test:{port}/hook", [])
        # The name answers the receiver's address once, then another one (DNS rebinding):
        # the delivery must reach the address its check approved.
        hosts.answer_in_turn("rebind.cliente.test", "127.0.0.1", "127.0.0.2")
        await change(stack, tenant, contato_id="c-rebind")
        (got,) = await receiver.wait_for(1)
    assert got.headers["host"] == f"rebind.cliente.test:{port}"
    assert verified(created.secret, got)
    assert hosts.script["rebind.cliente.test"] == ["127.0.0.2"]  # asked once, at the check


async def test_endpoints_only_get_the_kinds_they_asked_for(stack: RunningServer) -> None:
    tenant = await CrmCore(stack).sync_new_tenant(sellers=0)
    await register(stack, tenant.admin, "http://127.0.0.1:9/hook", [cpb.EVENT_KIND_ALERT])
    await change(stack, tenant, contato_id="c-3")
    assert await job_of(stack, tenant) is None


async def test_listing_and_updating_never_show_the_secret(stack: RunningServer) -> None:
    tenant = await CrmCore(stack).sync_new_tenant(sellers=0)
    stub = pb_grpc.OutboundWebhooksServiceStub(stack.channel)
    md = stack.metadata(tenant.admin)
    request = pb.CreateOutboundWebhookRequest(
        request_id="create-1", webhook=pb.OutboundWebhook(url="http://127.0.0.1:9/a")
    )
    first = await stub.CreateOutboundWebhook(request, metadata=md)
    again = await stub.CreateOutboundWebhook(request, metadata=md)
    assert (again.webhook.id, again.secret) == (first.webhook.id, first.secret)
    updated = await stub.UpdateOutboundWebhook(
        pb.UpdateOutboundWebhookRequest(
            id=first.webhook.id,
            webhook=pb.OutboundWebhook(ativo=False, descricao="paused"),
            update_mask={"paths": ["ativo", "descricao"]},
        ),
        metadata=md,
    )
    assert not updated.webhook.ativo and updated.webhook.descricao == "paused"
    listed = await stub.ListOutboundWebhooks(pb.ListOutboundWebhooksRequest(), metadata=md)
    assert [w.id for w in listed.webhooks] == [first.webhook.id]
    assert first.secret not in str(listed)
    await stub.DeleteOutboundWebhook(
        pb.DeleteOutboundWebhookRequest(id=first.webhook.id), metadata=md
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.DeleteOutboundWebhook(
            pb.DeleteOutboundWebhookRequest(id=first.webhook.id), metadata=md
        )
    assert error.value.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://localhost/hook",
        "http://8.8.8.8/hook",
        "ftp://8.8.8.8/hook",
        "https://user:pw@8.8.8.8/hook",
    ],
)
async def test_private_targets_and_plain_http_are_refused_in_production(url: str) -> None:
    assert await target_problems(url, allow_private=False)


async def test_public_https_targets_are_accepted() -> None:
    assert await target_problems("https://8.8.8.8/hook", allow_private=False) == []
