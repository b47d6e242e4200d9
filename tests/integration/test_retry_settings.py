"""Tenant admins read and change their retry settings; bad values change nothing."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import connections_service_pb2_grpc as pb_grpc

from server.auth.caller import Role
from server.resilience.policies import POLICIES, policy_for
from tests.support.jobs import rows


def _violations(exc: grpc.aio.AioRpcError) -> set[str]:
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    return {v.field for v in bad.field_violations}
    return set()


async def test_admin_reads_and_changes_retry_settings_within_bounds(
    server, make_tenant, make_caller, owner_engine
):
    tenant = await make_tenant()
    admin = server.metadata(make_caller(tenant, Role.ADMIN))
    stub = pb_grpc.ConnectionsServiceStub(server.channel)

    empty = await stub.GetRetrySettings(pb.GetRetrySettingsRequest(), metadata=admin)
    assert empty.retry_settings == pb.RetrySettings()  # the spec's defaults

    updated = await stub.UpdateRetrySettings(
        pb.UpdateRetrySettingsRequest(
            retry_settings=pb.RetrySettings(capi_max_retries=7, webhook_max_retries=2),
            request_id="retry-1",
        ),
        metadata=admin,
    )
    assert updated.retry_settings.capi_max_retries == 7
    stored = await rows(
        owner_engine,
        "SELECT configuracoes_extra->'retry_config' AS c FROM configuracoes_tenant"
        " WHERE organizacao_id = :t",
        t=tenant.id,
    )
    config = stored[0].c
    # What the workers read (server/resilience/budget.py) now says 7 and 2 attempts.
    assert policy_for("capi_event", config).max_retries == 7
    assert policy_for("outbound_webhook", config).max_retries == 2

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateRetrySettings(
            pb.UpdateRetrySettingsRequest(
                retry_settings=pb.RetrySettings(capi_max_retries=11, webhook_max_retries=-1),
                update_mask=field_mask_pb2.FieldMask(
                    paths=["capi_max_retries", "webhook_max_retries", "nope"]
                ),
            ),
            metadata=admin,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(err.value) == {
        "retry_settings.capi_max_retries",
        "retry_settings.webhook_max_retries",
        "update_mask",
    }

    # Only the masked field changes; 0 sends a count back to the default policy.
    masked = await stub.UpdateRetrySettings(
        pb.UpdateRetrySettingsRequest(
            retry_settings=pb.RetrySettings(desativar_retry_capi=True),
            update_mask=field_mask_pb2.FieldMask(paths=["desativar_retry_capi"]),
        ),
        metadata=admin,
    )
    assert masked.retry_settings == pb.RetrySettings(
        capi_max_retries=7, webhook_max_retries=2, desativar_retry_capi=True
    )
    reset = await stub.UpdateRetrySettings(
        pb.UpdateRetrySettingsRequest(
            retry_settings=pb.RetrySettings(),
            update_mask=field_mask_pb2.FieldMask(paths=["webhook_max_retries"]),
        ),
        metadata=admin,
    )
    assert reset.retry_settings.webhook_max_retries == 0
    read = await stub.GetRetrySettings(pb.GetRetrySettingsRequest(), metadata=admin)
    assert read.retry_settings == reset.retry_settings
    stored = await rows(
        owner_engine,
        "SELECT configuracoes_extra->'retry_config' AS c FROM configuracoes_tenant"
        " WHERE organizacao_id = :t",
        t=tenant.id,
    )
    assert policy_for("outbound_webhook", stored[0].c) == POLICIES["outbound_webhook"]
    assert policy_for("capi_event", stored[0].c).max_retries == 1  # retries disabled

    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.GetRetrySettings(
            pb.GetRetrySettingsRequest(),
            metadata=server.metadata(make_caller(tenant, Role.MEMBER)),
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
