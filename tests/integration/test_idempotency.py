"""AIP-155 through the real server: replays, a reused id refused, slots per caller, keyed
fingerprints, failures released, a running attempt not doubled, an abandoned one taken over."""

from __future__ import annotations

import hashlib
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import connections_service_pb2_grpc as pb_grpc
from sqlalchemy import text

from server.auth.caller import Caller, Role
from server.idempotency import (
    IdempotencyStore,
    RequestIdReused,
    RequestInProgress,
    Slot,
    caller_key,
    rpc_name,
)
from server.resilience.alerts import raise_alert
from server.security.cipher import Keyring


def _stub(server) -> pb_grpc.ConnectionsServiceStub:  # type: ignore[no-untyped-def]
    return pb_grpc.ConnectionsServiceStub(server.channel)


def _reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


async def _alert(db, tenant_id, *, user=None):  # type: ignore[no-untyped-def]
    async with db.unit_of_work(Caller(role=Role.SERVICE, tenant_id=tenant_id)) as session:
        return await raise_alert(
            session,
            tenant_id=tenant_id,
            audience="user" if user else "tenant_admin",
            usuario_id=user,
            kind="permanent_failure",
            severity="warning",
            message=f"alert {uuid.uuid4().hex[:6]}",
            details={"titulo": "Teste"},
        )


async def _records(owner_engine, tenant_id):  # type: ignore[no-untyped-def]
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant_id)}
        )
        result = await conn.execute(
            text(
                "SELECT caller, rpc, request_id, request_hash, response IS NOT NULL AS answered"
                " FROM idempotency_records WHERE organizacao_id = :t ORDER BY criado_em"
            ),
            {"t": tenant_id},
        )
        return result.mappings().all()


async def test_a_repeat_replays_and_a_changed_request_is_refused(
    server, make_tenant, make_caller, owner_engine
):
    tenant = await make_tenant(members=1)
    admin = server.metadata(make_caller(tenant, Role.ADMIN))
    request = pb.UpdateMemberPermissionsRequest(
        usuario_id=str(tenant.member_id), meta_lead_ads=True, request_id="grant-1"
    )
    first = await _stub(server).UpdateMemberPermissions(request, metadata=admin)
    again = await _stub(server).UpdateMemberPermissions(request, metadata=admin)
    assert first == again and first.member.meta_lead_ads

    changed = pb.UpdateMemberPermissionsRequest(
        usuario_id=str(tenant.member_id), meta_lead_ads=False, request_id="grant-1"
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stub(server).UpdateMemberPermissions(changed, metadata=admin)
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(err.value) == "REQUEST_ID_REUSED"
    listed = await _stub(server).ListMemberPermissions(
        pb.ListMemberPermissionsRequest(), metadata=admin
    )
    assert [m.meta_lead_ads for m in listed.members] == [True]  # the refusal changed nothing

    (record,) = await _records(owner_engine, tenant.id)
    assert record["caller"] == f"user:{tenant.admin_id}"
    assert record["rpc"] == "/renove.conexoes.v1.ConnectionsService/UpdateMemberPermissions"
    assert record["answered"]
    # Keyed: the stored fingerprint is not the request's plain digest.
    plain = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
    key_id, _, digest = record["request_hash"].partition(":")
    assert key_id and len(digest) == 64 and digest != plain


async def test_slots_belong_to_one_caller(server, db, make_tenant, make_caller):
    tenant = await make_tenant(members=1)
    for_admins = await _alert(db, tenant.id)
    for_member = await _alert(db, tenant.id, user=tenant.member_id)
    admin, member = make_caller(tenant, Role.ADMIN), make_caller(tenant, Role.MEMBER)
    by_admin = await _stub(server).AcknowledgeAlert(
        pb.AcknowledgeAlertRequest(id=str(for_admins), request_id="ack"),
        metadata=server.metadata(admin),
    )
    # The same request id from another user of the tenant is that user's own request.
    by_member = await _stub(server).AcknowledgeAlert(
        pb.AcknowledgeAlertRequest(id=str(for_member), request_id="ack"),
        metadata=server.metadata(member),
    )
    assert (by_admin.alert.id, by_member.alert.id) == (str(for_admins), str(for_member))
    assert by_member.alert.reconhecido_por.usuario_id == str(tenant.member_id)


async def test_a_failed_call_is_not_replayed(server, make_tenant, make_caller, owner_engine):
    tenant = await make_tenant()
    admin = server.metadata(make_caller(tenant, Role.ADMIN))
    missing = pb.AcknowledgeAlertRequest(id=str(uuid.uuid4()), request_id="ack-missing")
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _stub(server).AcknowledgeAlert(missing, metadata=admin)
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
    assert await _records(owner_engine, tenant.id) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stub(server).AcknowledgeAlert(
            pb.AcknowledgeAlertRequest(id=str(uuid.uuid4()), request_id="x" * 101), metadata=admin
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_running_attempt_holds_the_slot_until_its_lease_ends(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    caller = Caller(role=Role.ADMIN, tenant_id=tenant.id, user_id=tenant.admin_id)
    store = IdempotencyStore(db, Keyring.parse(Keyring.generate_key_spec("k1")))
    request = pb.AcknowledgeAlertRequest(id=str(uuid.uuid4()), request_id="slow")
    slot = Slot(tenant.id, caller_key(caller), rpc_name(request), "slow")
    assert await store.claim(caller, slot, request, pb.AcknowledgeAlertResponse) is None
    with pytest.raises(RequestInProgress):
        await store.claim(caller, slot, request, pb.AcknowledgeAlertResponse)
    other = pb.AcknowledgeAlertRequest(id=str(uuid.uuid4()), request_id="slow")
    with pytest.raises(RequestIdReused):
        await store.claim(caller, slot, other, pb.AcknowledgeAlertResponse)

    async with owner_engine.begin() as conn:  # the process holding it died long ago
        await conn.execute(
            text(
                "UPDATE idempotency_records SET claimed_at = now() - interval '1 hour'"
                " WHERE organizacao_id = :t"
            ),
            {"t": tenant.id},
        )
    assert await store.claim(caller, slot, request, pb.AcknowledgeAlertResponse) is None
    answer = pb.AcknowledgeAlertResponse(alert=pb.Alert(id=request.id))
    await store.answer(caller, slot, answer)
    assert await store.claim(caller, slot, request, pb.AcknowledgeAlertResponse) == answer
