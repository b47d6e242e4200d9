"""Caps on open server streams: per caller at the gRPC server, per client address at the
sidecar's gateway. Beyond them: RESOURCE_EXHAUSTED (STREAM_LIMIT_REACHED) / 429."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import connections_service_pb2_grpc as pb_grpc

from server.auth.caller import Role
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase
from tests.integration.ingress_helpers import sidecar_settings
from tests.support import grpc_server
from tests.support.grpc_server import RunningServer, running_server
from webhooks_http.app import SidecarOptions, build_sidecar_app
from webhooks_http.runner import serve_in_background

CAP = 2


@pytest.fixture(scope="module")
async def capped(database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = Path(tmp_path_factory.mktemp("caps"))
    settings = grpc_server.test_settings(database.owner_url, str(data), max_streams_per_caller=CAP)
    async with running_server(settings) as running:
        yield running


async def _first(call: grpc.aio.UnaryStreamCall) -> pb.WatchEventsResponse:  # type: ignore[type-arg]
    return await asyncio.wait_for(call.read(), timeout=10)  # the snapshot comes first


def _reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


async def test_streams_per_caller_are_capped_and_freed(
    capped: RunningServer, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=1)
    admin, member = make_caller(tenant, Role.ADMIN), make_caller(tenant, Role.MEMBER)
    stub = pb_grpc.ConnectionsServiceStub(capped.channel)
    calls = [stub.WatchEvents(pb.WatchEventsRequest(), metadata=capped.metadata(admin))
             for _ in range(CAP)]  # fmt: skip
    for call in calls:
        await _first(call)
    refused = stub.WatchEvents(pb.WatchEventsRequest(), metadata=capped.metadata(admin))
    with pytest.raises(grpc.aio.AioRpcError) as over:
        await _first(refused)
    assert over.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _reason(over.value) == "STREAM_LIMIT_REACHED"
    # Another user of the tenant has slots of their own.
    other = stub.WatchEvents(pb.WatchEventsRequest(), metadata=capped.metadata(member))
    await _first(other)
    # Closing a stream frees its slot.
    calls[0].cancel()
    for _ in range(100):
        if capped.app.stream_caps.open_streams(admin) < CAP:
            break
        await asyncio.sleep(0.02)
    again = stub.WatchEvents(pb.WatchEventsRequest(), metadata=capped.metadata(admin))
    await _first(again)
    for call in (*calls[1:], other, again):
        call.cancel()


async def test_streams_per_address_are_capped_at_the_gateway(
    server: RunningServer, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=3)
    options = SidecarOptions(max_streams_per_address=CAP)
    app = build_sidecar_app(sidecar_settings(), server.channel, options=options)
    async with AsyncExitStack() as stack:
        sidecar = await stack.enter_async_context(serve_in_background(app))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=sidecar.url, timeout=10))
        path = "/api/v1/conexoes/eventos:watch"

        async def watch(user_index: int) -> httpx.Response:
            caller = make_caller(tenant, Role.MEMBER, user=tenant.members[user_index])
            headers = {"authorization": f"Bearer {server.token(caller)}"}
            request = http.build_request("GET", path, headers=headers)
            return await http.send(request, stream=True)

        open_ = [await watch(n) for n in range(CAP)]  # different users, one address
        assert all(r.status_code == 200 for r in open_)
        refused = await watch(CAP)
        assert refused.status_code == 429 and refused.headers["retry-after"]
        body = await refused.aread()
        assert b'"code":8' in body
        for response in open_:
            await response.aclose()
