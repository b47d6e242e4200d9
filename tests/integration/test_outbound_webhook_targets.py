"""Outbound webhook targets as production judges them (private targets not allowed), with
names resolved by a DNS server the test controls: a name pointing at loopback is refused
when saved, and a name that moves to loopback after it was saved is refused at delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from renove.conexoes.v1 import outbound_webhooks_service_pb2 as pb
from renove.conexoes.v1 import outbound_webhooks_service_pb2_grpc as pb_grpc
from sqlalchemy import select

from db.models import PendingEvent
from server.outbox import record_change
from tests.conftest import MigratedDatabase
from tests.support.crm_core import CrmCore, DirectoryTenant
from tests.support.databases import isolated_database_fixture
from tests.support.dns_hosts import Hosts, hosts_dns
from tests.support.grpc_server import RunningServer, running_server
from tests.support.grpc_server import test_settings as settings_for
from tests.support.whatsapp_stack import poll

# This module's deliveries must be judged by its own settings, not another module's worker.
database = isolated_database_fixture()


@pytest.fixture(scope="module")
async def hosts() -> AsyncIterator[Hosts]:
    async with hosts_dns(Hosts()) as running:
        yield running


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory, hosts: Hosts
) -> AsyncIterator[RunningServer]:
    settings = settings_for(
        database.owner_url,
        str(tmp_path_factory.mktemp("targets")),
        webhook_allow_private_targets=False,
        dns_nameservers=(hosts.nameserver,),
        worker_poll_seconds=0.05,
    )
    async with running_server(settings) as running:
        yield running


def _violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found |= {v.field: v.description for v in bad.field_violations}
    return found


async def _create(stack: RunningServer, tenant: DirectoryTenant, url: str) -> pb.OutboundWebhook:
    stub = pb_grpc.OutboundWebhooksServiceStub(stack.channel)
    created = await stub.CreateOutboundWebhook(
        pb.CreateOutboundWebhookRequest(webhook=pb.OutboundWebhook(url=url)),
        metadata=stack.metadata(tenant.admin),
    )
    return created.webhook


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.cliente.test/renove",  # the name answers 127.0.0.1
        "https://intranet.cliente.test/renove",  # the name answers 10.0.0.7 and a public one
        "https://10.1.2.3/renove",
        "https://[::ffff:127.0.0.1]/renove",
        "http://publico.cliente.test/renove",  # plain http
    ],
)
async def test_create_refuses_private_targets_and_saves_nothing(
    stack: RunningServer, hosts: Hosts, url: str
) -> None:
    hosts.point("hooks.cliente.test", "127.0.0.1")
    hosts.point("intranet.cliente.test", "8.8.8.8", "10.0.0.7")
    hosts.point("publico.cliente.test", "8.8.8.8")
    tenant = await CrmCore(stack).sync_new_tenant(sellers=0)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await _create(stack, tenant, url)
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(_violations(error.value)) == {"webhook.url"}
    stub = pb_grpc.OutboundWebhooksServiceStub(stack.channel)
    listed = await stub.ListOutboundWebhooks(
        pb.ListOutboundWebhooksRequest(), metadata=stack.metadata(tenant.admin)
    )
    assert list(listed.webhooks) == []


async def test_a_name_that_moves_to_loopback_is_refused_at_delivery(
    stack: RunningServer, hosts: Hosts
) -> None:
    hosts.point("eco.cliente.test", "8.8.8.8")
    tenant = await CrmCore(stack).sync_new_tenant(sellers=0)
    webhook = await _create(stack, tenant, "https://eco.cliente.test/renove")
    assert webhook.ativo
    # An update naming a private target is refused and leaves the endpoint as it was.
    stub = pb_grpc.OutboundWebhooksServiceStub(stack.channel)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.UpdateOutboundWebhook(
            pb.UpdateOutboundWebhookRequest(
                id=webhook.id,
                webhook=pb.OutboundWebhook(url="https://169.254.169.254/latest/meta-data"),
                update_mask={"paths": ["url"]},
            ),
            metadata=stack.metadata(tenant.admin),
        )
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    # The name now answers loopback (rebinding after the check at save time).
    hosts.point("eco.cliente.test", "127.0.0.1")
    asked_before = hosts.asked_for("eco.cliente.test")
    async with stack.deps.db.unit_of_work(tenant.core) as session:
        await record_change(session, tenant.id, "CONTACT_CHANGED", {"contato_id": "c-9"})

    async def dead() -> PendingEvent | None:
        async with stack.deps.db.unit_of_work(tenant.core) as session:
            job = await session.scalar(
                select(PendingEvent).where(PendingEvent.tipo == "webhook_saida")
            )
        return job if job is not None and job.status == "failed" else None

    job = await poll(dead)
    assert job.tentativas == 1 and "private" in (job.ultimo_erro or "")
    assert hosts.asked_for("eco.cliente.test") == asked_before + 1  # checked again, once
