"""Tenant admins read and change their retry settings (the spec's `retry_config` in
`configuracoes_tenant.configuracoes_extra`), validated against the spec's bounds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from renove.conexoes.v1 import connections_service_pb2 as pb
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import TenantSettings
from server.audit import record_audit
from server.errors import FieldViolation, InvalidArgument
from server.idempotency import answer_in, idempotent
from server.interceptors.context import current_caller
from server.resilience.policies import MAX_TENANT_RETRIES, MIN_TENANT_RETRIES

if TYPE_CHECKING:
    from server.bootstrap import Deps

COUNTS = ("capi_max_retries", "webhook_max_retries")
FIELDS = (*COUNTS, "desativar_retry_capi")


def _proto(config: dict[str, Any]) -> pb.RetrySettings:
    def count(key: str) -> int:
        value = config.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return pb.RetrySettings(
        capi_max_retries=count("capi_max_retries"),
        webhook_max_retries=count("webhook_max_retries"),
        desativar_retry_capi=config.get("desativar_retry_capi") is True,
    )


def _merged(current: dict[str, Any], request: pb.UpdateRetrySettingsRequest) -> dict[str, Any]:
    """The new retry_config; raises InvalidArgument (every violation at once) on bad input."""
    paths = list(request.update_mask.paths) or list(FIELDS)
    wanted = request.retry_settings
    violations = [
        FieldViolation("update_mask", f"unknown path '{p}'") for p in paths if p not in FIELDS
    ]
    for key in COUNTS:
        value = getattr(wanted, key)
        if key in paths and value and not MIN_TENANT_RETRIES <= value <= MAX_TENANT_RETRIES:
            violations.append(
                FieldViolation(
                    f"retry_settings.{key}",
                    f"between {MIN_TENANT_RETRIES} and {MAX_TENANT_RETRIES}, or 0 for the default",
                )
            )
    if violations:
        raise InvalidArgument("invalid retry settings", violations)
    config = dict(current)
    for key in paths:
        value = getattr(wanted, key)
        if value:
            config[key] = value
        else:  # 0 / false: back to the default policy
            config.pop(key, None)
    return config


async def _current(session: AsyncSession) -> dict[str, Any]:
    extra = await session.scalar(select(TenantSettings.configuracoes_extra).with_for_update())
    config = (extra or {}).get("retry_config")
    return dict(config) if isinstance(config, dict) else {}


class RetrySettingsRpcs:
    deps: Deps

    async def GetRetrySettings(
        self, request: pb.GetRetrySettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRetrySettingsResponse:
        async with self.deps.db.unit_of_work(current_caller()) as session:
            extra = await session.scalar(select(TenantSettings.configuracoes_extra))
        config = (extra or {}).get("retry_config")
        return pb.GetRetrySettingsResponse(
            retry_settings=_proto(config if isinstance(config, dict) else {})
        )

    @idempotent
    async def UpdateRetrySettings(
        self, request: pb.UpdateRetrySettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateRetrySettingsResponse:
        caller = current_caller()
        tenant = caller.require_tenant()
        async with self.deps.db.unit_of_work(caller) as session:
            before = await _current(session)
            config = _merged(before, request)
            # Other keys of configuracoes_extra belong to the CRM: only retry_config is set.
            stmt = insert(TenantSettings).values(
                organizacao_id=tenant, configuracoes_extra={"retry_config": config}
            )
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["organizacao_id"],
                    set_={
                        "configuracoes_extra": TenantSettings.configuracoes_extra.op("||")(
                            stmt.excluded.configuracoes_extra
                        )
                    },
                )
            )
            await record_audit(
                session,
                caller,
                "retry_settings.updated",
                entity_type="configuracoes_tenant",
                details={"antes": before, "depois": config},
            )
            response = pb.UpdateRetrySettingsResponse(retry_settings=_proto(config))
            await answer_in(session, response)
        return response
