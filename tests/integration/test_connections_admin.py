"""ConnectionsService: platform credentials, member grants and the audit log, over real gRPC."""

from __future__ import annotations

import logging
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import connections_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import resources_pb2 as rpb
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Role
from tests.support.grpc_server import RunningServer

META = pb.PLATFORM_PROVIDER_META_APP
WAHA = pb.PLATFORM_PROVIDER_WAHA


def _stub(server: RunningServer) -> pb_grpc.ConnectionsServiceStub:
    return pb_grpc.ConnectionsServiceStub(server.channel)


def _violations(err: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(err)
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


async def test_platform_secrets_are_write_only_and_never_logged(
    server: RunningServer, owner_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret, verify = f"app-secret-{uuid.uuid4().hex}", f"verify-{uuid.uuid4().hex}"
    su = server.metadata(server.super_admin())
    updated = await _stub(server).UpdatePlatformCredentials(
        pb.UpdatePlatformCredentialsRequest(
            provider=META,
            meta_app=pb.MetaAppCredentialsUpdate(
                app_id="1234567890", app_secret=secret, verify_token=verify
            ),
        ),
        metadata=su,
    )
    creds = updated.credentials
    assert creds.meta_app.app_id == "1234567890"
    assert creds.meta_app.app_secret_set and creds.meta_app.verify_token_set
    assert creds.source == pb.CREDENTIAL_SOURCE_DATABASE
    listed = await _stub(server).ListPlatformCredentials(
        pb.ListPlatformCredentialsRequest(), metadata=su
    )
    audit = await _stub(server).ListAuditLog(pb.ListAuditLogRequest(), metadata=su)
    for message in (updated, listed, audit):
        raw = message.SerializeToString()
        assert secret.encode() not in raw and verify.encode() not in raw
    assert secret not in caplog.text and verify not in caplog.text
    async with owner_engine.connect() as conn:
        stored = (await conn.execute(text("SELECT * FROM platform_credentials"))).all()
    assert stored and all(secret not in str(row) for row in stored)
    assert any(e.acao == "platform_credentials.updated" for e in audit.entries)
    # Platform credentials are global: leave none behind for tests that use defaults.
    await _stub(server).UpdatePlatformCredentials(
        pb.UpdatePlatformCredentialsRequest(
            provider=META,
            meta_app=pb.MetaAppCredentialsUpdate(),
            update_mask=field_mask_pb2.FieldMask(paths=["app_id", "app_secret", "verify_token"]),
        ),
        metadata=su,
    )


async def test_platform_credentials_validation_changes_nothing(server: RunningServer) -> None:
    su = server.metadata(server.super_admin())
    stub = _stub(server)
    before = await stub.GetPlatformCredentials(
        pb.GetPlatformCredentialsRequest(provider=WAHA), metadata=su
    )
    bad_requests = [
        pb.UpdatePlatformCredentialsRequest(
            provider=WAHA, waha=pb.WahaCredentialsUpdate(base_url="ftp://nope")
        ),
        pb.UpdatePlatformCredentialsRequest(
            provider=WAHA, meta_app=pb.MetaAppCredentialsUpdate(app_id="1")
        ),
        pb.UpdatePlatformCredentialsRequest(provider=WAHA, waha=pb.WahaCredentialsUpdate()),
        pb.UpdatePlatformCredentialsRequest(
            provider=WAHA,
            waha=pb.WahaCredentialsUpdate(api_key="k"),
            update_mask=field_mask_pb2.FieldMask(paths=["waha.nonexistent"]),
        ),
    ]
    for request in bad_requests:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.UpdatePlatformCredentials(request, metadata=su)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert _violations(err.value)
    after = await stub.GetPlatformCredentials(
        pb.GetPlatformCredentialsRequest(provider=WAHA), metadata=su
    )
    assert after == before


async def test_update_mask_clears_a_stored_override(server: RunningServer) -> None:
    # Instagram: platform credentials are global, and no other test relies on these.
    su = server.metadata(server.super_admin())
    stub = _stub(server)
    insta = pb.PLATFORM_PROVIDER_INSTAGRAM_APP
    await stub.UpdatePlatformCredentials(
        pb.UpdatePlatformCredentialsRequest(
            provider=insta,
            instagram_app=pb.InstagramAppCredentialsUpdate(app_id="998877", app_secret="s1"),
        ),
        metadata=su,
    )
    cleared = await stub.UpdatePlatformCredentials(
        pb.UpdatePlatformCredentialsRequest(
            provider=insta,
            instagram_app=pb.InstagramAppCredentialsUpdate(),
            update_mask=field_mask_pb2.FieldMask(paths=["app_secret"]),
        ),
        metadata=su,
    )
    assert cleared.credentials.instagram_app.app_id == "998877"
    assert not cleared.credentials.instagram_app.app_secret_set


async def test_request_id_replays_the_first_response(server: RunningServer) -> None:
    su = server.metadata(server.super_admin())
    request = pb.UpdatePlatformCredentialsRequest(
        provider=pb.PLATFORM_PROVIDER_GOOGLE_APP,
        google_app=pb.GoogleAppCredentialsUpdate(client_id="first.apps.googleusercontent.com"),
        request_id=str(uuid.uuid4()),
    )
    first = await _stub(server).UpdatePlatformCredentials(request, metadata=su)
    second = await _stub(server).UpdatePlatformCredentials(request, metadata=su)
    assert first == second
    different = pb.UpdatePlatformCredentialsRequest()
    different.CopyFrom(request)
    different.google_app.client_id = "other"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stub(server).UpdatePlatformCredentials(different, metadata=su)
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_admin_grants_and_revokes_member_permissions(
    server: RunningServer, make_tenant, make_caller
) -> None:
    tenant = await make_tenant(members=2)
    admin = server.metadata(make_caller(tenant, Role.ADMIN))
    stub = _stub(server)
    listed = await stub.ListMemberPermissions(pb.ListMemberPermissionsRequest(), metadata=admin)
    assert {m.usuario_id for m in listed.members} == {str(m) for m in tenant.members}
    assert not any(m.meta_lead_ads for m in listed.members)

    granted = await stub.UpdateMemberPermissions(
        pb.UpdateMemberPermissionsRequest(usuario_id=str(tenant.member_id), meta_lead_ads=True),
        metadata=admin,
    )
    assert granted.member.meta_lead_ads and not granted.member.instagram_direct
    audit = await stub.ListAuditLog(
        pb.ListAuditLogRequest(acao="member_permissions.updated"), metadata=admin
    )
    assert [e.entidade_id for e in audit.entries] == [str(tenant.member_id)]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateMemberPermissions(
            pb.UpdateMemberPermissionsRequest(usuario_id=str(tenant.admin_id), meta_lead_ads=True),
            metadata=admin,
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    # A user of another tenant is invisible: NOT_FOUND, not PERMISSION_DENIED.
    other = await make_tenant(members=1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateMemberPermissions(
            pb.UpdateMemberPermissionsRequest(usuario_id=str(other.member_id), meta_lead_ads=True),
            metadata=admin,
        )
    assert err.value.code() is grpc.StatusCode.NOT_FOUND


async def test_audit_log_is_tenant_scoped_and_paginated(
    server: RunningServer, make_tenant, make_caller
) -> None:
    tenant = await make_tenant(members=3)
    admin = server.metadata(make_caller(tenant, Role.ADMIN))
    stub = _stub(server)
    for member in tenant.members:
        await stub.UpdateMemberPermissions(
            pb.UpdateMemberPermissionsRequest(usuario_id=str(member), instagram_direct=True),
            metadata=admin,
        )
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListAuditLog(
            pb.ListAuditLogRequest(page_size=2, page_token=token), metadata=admin
        )
        seen += [e.id for e in page.entries]
        assert all(e.organizacao_id == str(tenant.id) for e in page.entries)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 3
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListAuditLog(pb.ListAuditLogRequest(page_token="garbage!"), metadata=admin)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_overview_lists_every_kind_with_what_the_caller_may_do(
    server: RunningServer, make_tenant, make_caller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=2)
    member = make_caller(tenant, Role.MEMBER)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text(
                "INSERT INTO sessoes_whatsapp (organizacao_id, usuario_id, session_name, status,"
                " phone_number) VALUES (:o, :u, 'wpp-x', 'connected', '+5511999990000'),"
                " (:o, :other, 'wpp-y', 'failed', NULL)"
            ),
            {"o": tenant.id, "u": tenant.member_id, "other": tenant.members[1]},
        )
    mine = await _stub(server).GetConnectionsOverview(
        pb.GetConnectionsOverviewRequest(), metadata=server.metadata(member)
    )
    by_kind = {c.connection_type: c for c in mine.connections}
    assert len(by_kind) == 8
    whatsapp = by_kind[rpb.CONNECTION_TYPE_WHATSAPP]
    assert whatsapp.status == rpb.CONNECTION_STATUS_ACTIVE
    assert whatsapp.account_label == "+5511999990000" and whatsapp.permitido
    assert whatsapp.owner.usuario_id == str(tenant.member_id)
    assert by_kind[rpb.CONNECTION_TYPE_GOOGLE_CALENDAR].status == rpb.CONNECTION_STATUS_DISCONNECTED
    assert not by_kind[rpb.CONNECTION_TYPE_META_LEAD_ADS].permitido
    assert not by_kind[rpb.CONNECTION_TYPE_META_CONVERSIONS_API].permitido
    assert mine.minhas_permissoes.usuario_id == str(tenant.member_id)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stub(server).GetConnectionsOverview(
            pb.GetConnectionsOverviewRequest(scope=pb.OVERVIEW_SCOPE_TENANT),
            metadata=server.metadata(member),
        )
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED

    tenant_view = await _stub(server).GetConnectionsOverview(
        pb.GetConnectionsOverviewRequest(scope=pb.OVERVIEW_SCOPE_TENANT),
        metadata=server.metadata(make_caller(tenant, Role.ADMIN)),
    )
    statuses = sorted(
        (c.owner.usuario_id, c.status)
        for c in tenant_view.connections
        if c.connection_type == rpb.CONNECTION_TYPE_WHATSAPP
    )
    assert statuses == sorted(
        [
            (str(tenant.member_id), rpb.CONNECTION_STATUS_ACTIVE),
            (str(tenant.members[1]), rpb.CONNECTION_STATUS_ERROR),
        ]
    )
