"""AIP-155 through the real server: replays, a reused id refused, slots per caller, keyed
fingerprints, failures released, a running attempt not doubled, a crashed one's taken over at
once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from types import SimpleNamespace

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
    answer_in,
    caller_key,
    idempotent,
    lock_key,
    rpc_name,
)
from server.interceptors.context import current_caller, reset_caller, set_caller
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


async def test_a_running_attempt_holds_the_slot_while_it_runs(db, make_tenant):
    tenant = await make_tenant()
    caller = Caller(role=Role.ADMIN, tenant_id=tenant.id, user_id=tenant.admin_id)
    store = IdempotencyStore(db, Keyring.parse(Keyring.generate_key_spec("k1")))
    request = pb.AcknowledgeAlertRequest(id=str(uuid.uuid4()), request_id="slow")
    slot = Slot(tenant.id, caller_key(caller), rpc_name(request), "slow")
    answer = pb.AcknowledgeAlertResponse(alert=pb.Alert(id=request.id))
    async with store.hold(caller, slot, request, pb.AcknowledgeAlertResponse) as prior:
        assert prior is None
        with pytest.raises(RequestInProgress):
            async with store.hold(caller, slot, request, pb.AcknowledgeAlertResponse):
                pass
        other = pb.AcknowledgeAlertRequest(id=str(uuid.uuid4()), request_id="slow")
        with pytest.raises(RequestIdReused):
            async with store.hold(caller, slot, other, pb.AcknowledgeAlertResponse):
                pass
        await store.answer(caller, slot, answer)
    async with store.hold(caller, slot, request, pb.AcknowledgeAlertResponse) as prior:
        assert prior == answer


async def _backend_holding(owner_engine, key: int) -> int:  # type: ignore[no-untyped-def]
    """The backend holding advisory lock `key` (a bigint key shows as its two 32-bit halves)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    async with owner_engine.begin() as conn:
        pid = await conn.scalar(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
            ),
            {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF},
        )
    assert pid is not None
    return int(pid)


async def test_a_crashed_holders_slot_is_taken_over_at_once(db, make_tenant, owner_engine):
    """The process running the RPC dies (its session cut, as SIGKILL or a lost connection
    cut it): a repeat is not told REQUEST_IN_PROGRESS for long; it runs the work itself."""
    tenant = await make_tenant()
    caller = Caller(role=Role.ADMIN, tenant_id=tenant.id, user_id=tenant.admin_id)
    store = IdempotencyStore(db, Keyring.parse(Keyring.generate_key_spec("k1")))
    request = pb.AcknowledgeAlertRequest(id=str(uuid.uuid4()), request_id="crash")
    slot = Slot(tenant.id, caller_key(caller), rpc_name(request), "crash")
    crashed = asyncio.Event()

    async def doomed_attempt() -> None:
        async with store.hold(caller, slot, request, pb.AcknowledgeAlertResponse) as prior:
            assert prior is None
            await crashed.wait()

    attempt = asyncio.create_task(doomed_attempt())
    async with asyncio.timeout(10):
        while True:
            async with owner_engine.begin() as conn:
                rows = await conn.scalar(
                    text("SELECT count(*) FROM idempotency_records WHERE request_id = 'crash'")
                )
            if rows:
                break
            await asyncio.sleep(0.02)
    with pytest.raises(RequestInProgress):
        async with store.hold(caller, slot, request, pb.AcknowledgeAlertResponse):
            pass
    holder = await _backend_holding(owner_engine, lock_key(slot))
    async with owner_engine.begin() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})
    async with asyncio.timeout(10):
        while True:
            try:
                async with store.hold(caller, slot, request, pb.AcknowledgeAlertResponse) as prior:
                    assert prior is None  # taken over: this repeat runs the work
                    await store.answer(caller, slot, pb.AcknowledgeAlertResponse())
                break
            except RequestInProgress:  # the server has not noticed the session's end yet
                await asyncio.sleep(0.02)
    crashed.set()
    with contextlib.suppress(Exception):
        await attempt


class _Servicer:
    """An idempotent RPC whose work ends in one transaction (answer_in) and may fail after."""

    def __init__(self, db, keyring, fail_inside: bool, fail_after: bool) -> None:  # type: ignore[no-untyped-def]
        self.deps = SimpleNamespace(db=db, keyring=keyring)
        self.fail_inside, self.fail_after, self.runs = fail_inside, fail_after, 0

    @idempotent
    async def AcknowledgeAlert(self, request, context):  # type: ignore[no-untyped-def]
        self.runs += 1
        caller = current_caller()
        async with self.deps.db.unit_of_work(caller) as tx:
            alert_id = await raise_alert(
                tx,
                tenant_id=caller.tenant_id,
                audience="tenant_admin",
                kind="permanent_failure",
                severity="info",
                message=request.id,
            )
            response = pb.AcknowledgeAlertResponse(alert=pb.Alert(id=str(alert_id)))
            await answer_in(tx, response)
            if self.fail_inside:
                raise RuntimeError("rolled back with its answer")
        if self.fail_after:
            raise RuntimeError("failed after the work committed")
        return response


async def _alerts_about(owner_engine, tenant_id, marker):  # type: ignore[no-untyped-def]
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant_id)}
        )
        return await conn.scalar(
            text("SELECT count(*) FROM alerts WHERE message = :m"), {"m": marker}
        )


async def test_an_answer_in_the_work_transaction_commits_with_it(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    keyring = Keyring.parse(Keyring.generate_key_spec("k1"))
    token = set_caller(Caller(role=Role.ADMIN, tenant_id=tenant.id, user_id=tenant.admin_id))
    try:
        marker = uuid.uuid4().hex
        request = pb.AcknowledgeAlertRequest(id=marker, request_id="atomic-1")
        rolled_back = _Servicer(db, keyring, fail_inside=True, fail_after=False)
        with pytest.raises(RuntimeError):
            await rolled_back.AcknowledgeAlert(request, None)
        assert await _alerts_about(owner_engine, tenant.id, marker) == 0
        assert await _records(owner_engine, tenant.id) == []  # released: a retry runs again

        committed = _Servicer(db, keyring, fail_inside=False, fail_after=True)
        with pytest.raises(RuntimeError):
            await committed.AcknowledgeAlert(request, None)
        # The work and its answer committed together: the repeat replays, nothing runs twice.
        again = await committed.AcknowledgeAlert(request, None)
        assert committed.runs == 1 and again.alert.id
        assert await _alerts_about(owner_engine, tenant.id, marker) == 1
    finally:
        reset_caller(token)
