"""Every RPC of the contract x every kind of caller gets the answer the spec's matrix gives.

The expected matrix is written here from the spec ("Roles e Permissoes"), independently of
server/auth/permissions.py, so a wrong entry in the table fails this test.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import uuid
from collections.abc import Iterator

import grpc
import pytest
import renove.conexoes.v1 as contract
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Caller, Role
from tests.support.grpc_server import RunningServer

MEMBER, GRANTED, ADMIN = "member", "member_granted", "admin"
SUPER, SUPER_IN_TENANT, SERVICE, OTHER = (
    "super_admin",
    "super_admin_in_tenant",
    "service",
    "other_tenant_admin",
)
TENANT_USERS = {MEMBER, GRANTED, ADMIN, SUPER_IN_TENANT, OTHER}
ADMINS = {ADMIN, SUPER_IN_TENANT, OTHER}

# Spec matrix, by category.
ALLOWED: dict[str, set[str]] = {
    "personal": TENANT_USERS,  # WhatsApp, Google Calendar, Gmail, SMTP: always allowed
    "lead_ads": ADMINS | {GRANTED},  # member only with conexao.meta_lead_ads
    "instagram": ADMINS | {GRANTED},  # member only with conexao.instagram_direct
    "instagram_send": ADMINS | {GRANTED, SERVICE},  # and automations of other CRM services
    "admin": ADMINS,  # CAPI, Custom Audiences, tenant administration
    "admin_or_platform": ADMINS | {SUPER},
    "user_or_platform": TENANT_USERS | {SUPER},
    "super_admin": {SUPER, SUPER_IN_TENANT},  # platform app credentials
    "service": {SERVICE},  # webhooks and OAuth redirects through the sidecar
    "admin_or_service": ADMINS | {SERVICE},  # "Sistema/Admin"
    "crm": TENANT_USERS | {SERVICE},
    # The change feed: users as before, and the CRM core with the service identity.
    "feed": TENANT_USERS | {SUPER, SERVICE},
}
SERVICE_DEFAULT = {
    "WhatsAppService": "personal",
    "GoogleCalendarService": "personal",
    "EmailService": "personal",
    "MetaLeadsService": "lead_ads",
    "InstagramService": "instagram",
    "ConversionsService": "admin",
    "AudiencesService": "admin",
    "ConnectionsService": "admin",
    "WebhookIngressService": "service",
    "CrmEventsService": "admin_or_service",  # pipeline events: members refused
    "CrmDirectoryService": "service",  # the CRM core writes the directory
    "OutboundWebhooksService": "admin",
    "KpisService": "admin",  # the spec's KPIs and the status history behind them
}
OVERRIDES = {
    "ListWhatsAppSessions": "admin",
    "HandleMetaOAuthCallback": "service",
    "HandleGoogleOAuthCallback": "service",
    "HandleGmailOAuthCallback": "service",
    "RecordEmailOpen": "service",
    "HandleInstagramOAuthCallback": "service",
    "RefreshInstagramToken": "admin_or_service",
    "SendInstagramMessage": "instagram_send",
    "GetConnectionsOverview": "personal",
    "ListPlatformCredentials": "super_admin",
    "GetPlatformCredentials": "super_admin",
    "UpdatePlatformCredentials": "super_admin",
    "ListAuditLog": "admin_or_platform",
    "ListCircuitBreakers": "admin_or_platform",
    "GetRetrySettings": "admin",
    "UpdateRetrySettings": "admin",
    "ListAlerts": "user_or_platform",
    "AcknowledgeAlert": "user_or_platform",
    "WatchEvents": "feed",
    "ListCrmPipelines": "crm",
    "ListCrmFields": "crm",
}
DENIED_CODES = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def _methods() -> Iterator[MethodDescriptor]:
    for info in pkgutil.iter_modules(contract.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"{contract.__name__}.{info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                yield from service.methods


METHODS = sorted(_methods(), key=lambda m: m.full_name)


def _category(method: MethodDescriptor) -> str:
    return OVERRIDES.get(method.name, SERVICE_DEFAULT[method.containing_service.name])


async def _call(
    server: RunningServer, method: MethodDescriptor, caller: Caller | None
) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    request = message_factory.GetMessageClass(method.input_type)()
    response_type = message_factory.GetMessageClass(method.output_type)
    kwargs = {
        "request_serializer": type(request).SerializeToString,
        "response_deserializer": response_type.FromString,
    }
    metadata = server.metadata(caller)
    try:
        if method.server_streaming:
            call = server.channel.unary_stream(path, **kwargs)(request, metadata=metadata)
            try:
                await asyncio.wait_for(call.read(), timeout=3)
            except TimeoutError:
                return grpc.StatusCode.OK  # admitted and streaming
            finally:
                call.cancel()
            return grpc.StatusCode.OK
        await server.channel.unary_unary(path, **kwargs)(request, metadata=metadata, timeout=10)
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as exc:
        return exc.code()


async def _grant(owner_engine: AsyncEngine, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant_id)}
        )
        await conn.execute(
            text(
                "UPDATE usuarios SET permissoes_conexoes ="
                ' \'{"meta_lead_ads": true, "instagram_direct": true}\' WHERE id = :u'
            ),
            {"u": user_id},
        )


async def test_every_rpc_has_a_rule_and_matches_the_matrix(
    server: RunningServer, make_tenant, make_caller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=2)
    other = await make_tenant(members=0)
    granted_member = tenant.members[1]
    await _grant(owner_engine, tenant.id, granted_member)
    callers: dict[str, Caller] = {
        MEMBER: make_caller(tenant, Role.MEMBER),
        GRANTED: make_caller(tenant, Role.MEMBER, user=granted_member),
        ADMIN: make_caller(tenant, Role.ADMIN),
        SUPER: Caller(role=Role.SUPER_ADMIN, user_id=uuid.uuid4()),
        SUPER_IN_TENANT: Caller(
            role=Role.SUPER_ADMIN, tenant_id=tenant.id, user_id=tenant.admin_id
        ),
        SERVICE: Caller(role=Role.SERVICE),
        OTHER: make_caller(other, Role.ADMIN),
    }
    limit = asyncio.Semaphore(16)
    failures: list[str] = []

    async def check(method: MethodDescriptor, who: str | None) -> None:
        async with limit:
            code = await _call(server, method, callers[who] if who else None)
        if who is None:
            if code is not grpc.StatusCode.UNAUTHENTICATED:
                failures.append(f"{method.name} without token: {code.name}")
            return
        allowed = who in ALLOWED[_category(method)]
        if allowed and code in DENIED_CODES:
            failures.append(f"{method.name} as {who}: expected admitted, got {code.name}")
        if not allowed and code is not grpc.StatusCode.PERMISSION_DENIED:
            failures.append(f"{method.name} as {who}: expected PERMISSION_DENIED, got {code.name}")

    await asyncio.gather(*(check(m, who) for m in METHODS for who in [None, *callers]))
    assert not failures, "\n".join(sorted(failures))
    assert len(METHODS) >= 83


@pytest.mark.parametrize("header", ["Bearer not-a-jwt", "Basic abc", "Bearer "])
async def test_malformed_tokens_are_unauthenticated(server: RunningServer, header: str) -> None:
    method = next(m for m in METHODS if m.name == "GetWhatsAppStatus")
    path = f"/{method.containing_service.full_name}/{method.name}"
    request = message_factory.GetMessageClass(method.input_type)()
    call = server.channel.unary_unary(
        path,
        request_serializer=type(request).SerializeToString,
        response_deserializer=message_factory.GetMessageClass(method.output_type).FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(request, metadata=(("authorization", header),))
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_revoking_a_grant_takes_effect_at_once(
    server: RunningServer, make_tenant, make_caller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    method = next(m for m in METHODS if m.name == "GetMetaConnection")
    assert await _call(server, method, member) is grpc.StatusCode.PERMISSION_DENIED
    await _grant(owner_engine, tenant.id, tenant.member_id)
    assert await _call(server, method, member) not in DENIED_CODES
