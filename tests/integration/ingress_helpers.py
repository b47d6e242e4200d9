"""Shared arrangements for the webhook ingress tests: provider signing, seeded recipients,
platform secrets, the real sidecar in front of the test server, inbox/job/audit readers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Caller, Role
from server.settings import Settings
from tests.support.grpc_server import TEST_JWT_SECRET, TEST_SERVICE_SECRET, RunningServer
from webhooks_http.app import SidecarOptions, build_sidecar_app
from webhooks_http.ratelimit import RateLimitOptions
from webhooks_http.runner import RunningSidecar, serve_in_background

WAHA_KEY = "waha-hmac-key-for-tests"
META_SECRET = "meta-app-secret-for-tests"
IG_SECRET = "instagram-app-secret-for-tests"
VERIFY_TOKEN = "meta-verify-token-for-tests"


def waha_headers(body: bytes, key: str = WAHA_KEY) -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha512).hexdigest()
    return {
        "content-type": "application/json",
        "x-webhook-hmac": digest,
        "x-webhook-hmac-algorithm": "sha512",
    }


def hub_headers(body: bytes, secret: str = META_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}


def waha_envelope(session: str, *, event_id: str | None = None, **extra: Any) -> bytes:
    envelope: dict[str, Any] = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "timestamp": 1634567890123,
        "event": "message",
        "session": session,
        "payload": {"id": f"false_5511999999999@c.us_{uuid.uuid4().hex[:8]}", "body": "Olá"},
        "engine": "WEBJS",
        **extra,
    }
    # ensure_ascii=False: the signature must hold over the bytes as sent, UTF-8 included.
    return json.dumps(envelope, ensure_ascii=False).encode()


def leadgen_body(*changes: tuple[str, str]) -> bytes:
    """A Page notification; ids as big JSON numbers, the way Meta sends them."""
    # Written by hand, not json.dumps: the ids must be bare numbers beyond 2^53.
    items = ",".join(
        f'{{"field":"leadgen","value":{{"leadgen_id":{leadgen},"page_id":{page},'
        f'"form_id":12312312312,"created_time":1440120384}}}}'
        for leadgen, page in changes
    )
    entry = f'{{"id":0,"time":1438292065,"changes":[{items}]}}'
    return f'{{"object":"page","entry":[{entry}]}}'.encode()


async def set_platform_secrets(server: RunningServer) -> None:
    """The platform secrets the ingress checks against, as a super admin would store them."""
    deps = server.deps
    admin = Caller(role=Role.SUPER_ADMIN, user_id=uuid.uuid4())
    async with deps.db.unit_of_work(admin) as session:
        await deps.platform.update(
            session, "waha", {"webhook_hmac_key": WAHA_KEY}, updated_by=admin.user_id
        )
        await deps.platform.update(
            session,
            "meta",
            {"app_secret": META_SECRET, "verify_token": VERIFY_TOKEN},
            updated_by=admin.user_id,
        )
        await deps.platform.update(
            session, "instagram", {"app_secret": IG_SECRET}, updated_by=admin.user_id
        )


async def _as_owner(engine: AsyncEngine, tenant: uuid.UUID, sql: str, **params: Any) -> Any:
    async with engine.begin() as conn:
        # RLS is forced, for the owner too: act inside the tenant.
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant)}
        )
        return (await conn.execute(text(sql), params)).scalar()


async def seed_waha_session(
    engine: AsyncEngine, tenant_id: uuid.UUID, user_id: uuid.UUID, session_name: str
) -> uuid.UUID:
    sessao: uuid.UUID = await _as_owner(
        engine,
        tenant_id,
        "INSERT INTO sessoes_whatsapp (organizacao_id, usuario_id, session_name) "
        "VALUES (:org, :user, :name) RETURNING id",
        org=tenant_id,
        user=user_id,
        name=session_name,
    )
    return sessao


async def seed_meta_page(engine: AsyncEngine, tenant_id: uuid.UUID, page_id: str) -> uuid.UUID:
    conexao = await _as_owner(
        engine,
        tenant_id,
        "INSERT INTO conexoes_meta (organizacao_id, access_token_encrypted) "
        "VALUES (:org, 'sealed') RETURNING id",
        org=tenant_id,
    )
    pagina: uuid.UUID = await _as_owner(
        engine,
        tenant_id,
        "INSERT INTO paginas_meta (conexao_id, organizacao_id, page_id) "
        "VALUES (:c, :org, :page) RETURNING id",
        c=conexao,
        org=tenant_id,
        page=page_id,
    )
    return pagina


async def inbox_rows(
    engine: AsyncEngine, provider: str, event_id: str, tenant_id: uuid.UUID | None = None
) -> list[Mapping[str, Any]]:
    """Rows of webhook_inbox for an event: the tenant's and those with no tenant."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "SELECT set_config('app.current_role', 'super_admin', true),"
                " set_config('app.current_tenant', :t, true)"
            ),
            {"t": str(tenant_id or "")},
        )
        rows = await conn.execute(
            text(
                "SELECT id, organizacao_id, verdict, body, headers FROM webhook_inbox "
                "WHERE provider = :p AND provider_event_id LIKE :e"
            ),
            {"p": provider, "e": f"{event_id}%"},
        )
        return [dict(r._mapping) for r in rows]


async def jobs_for(engine: AsyncEngine, tenant_id: uuid.UUID, key: str) -> list[Mapping[str, Any]]:
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant_id)}
        )
        rows = await conn.execute(
            text(
                "SELECT operacao, payload, status FROM eventos_pendentes WHERE idempotency_key = :k"
            ),
            {"k": key},
        )
        return [dict(r._mapping) for r in rows]


async def audit_entries(engine: AsyncEngine, action: str, marker: str) -> list[Mapping[str, Any]]:
    """Platform-level audit rows of `action` whose details mention `marker`."""
    async with engine.begin() as conn:
        await conn.execute(text("SELECT set_config('app.current_role', 'super_admin', true)"))
        rows = await conn.execute(
            text(
                "SELECT organizacao_id, action, details FROM audit_log "
                "WHERE action = :a AND details::text LIKE :m"
            ),
            {"a": action, "m": f"%{marker}%"},
        )
        return [dict(r._mapping) for r in rows]


def sidecar_settings(**overrides: Any) -> Settings:
    return Settings(
        jwt_secret=TEST_JWT_SECRET, service_token_secret=TEST_SERVICE_SECRET, **overrides
    )


@asynccontextmanager
async def running_sidecar(
    server: RunningServer,
    *,
    settings: Settings | None = None,
    rate: float = 1000.0,
    burst: int = 10_000,
) -> AsyncIterator[RunningSidecar]:
    """The real sidecar (uvicorn on a free port) calling `server` through its channel."""
    options = SidecarOptions(
        rate_limit=RateLimitOptions(rate_per_second=rate, burst=burst), webhook_deadline_s=10.0
    )
    app = build_sidecar_app(settings or sidecar_settings(), server.channel, options=options)
    async with serve_in_background(app) as sidecar:
        yield sidecar
