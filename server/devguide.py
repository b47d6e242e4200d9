"""What `python -m server dev` wires and tells: the children's environment and the guide.

Kept apart from the process supervision in server/dev.py because it is pure: environment in,
environment and text out (and unit-tested that way).
"""

from __future__ import annotations

import os
import shlex
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from server.auth.caller import Role
from server.auth.tokens import mint_token
from server.security.cipher import development_key_spec
from server.seed import DemoTenant
from server.settings import DEV_JWT_SECRET, DEV_SERVICE_TOKEN_SECRET, Settings

# Sandbox prefix -> the provider base URLs it stands for (sandbox/app.py mounts the prefixes).
SANDBOX_PREFIXES: dict[str, tuple[str, ...]] = {
    "/waha": ("CONEXOES_WAHA_URL",),
    # The Graph fake serves both the Graph API and the Facebook Login dialog.
    "/graph": ("CONEXOES_META_GRAPH_URL", "CONEXOES_META_OAUTH_URL"),
    "/instagram": (
        "CONEXOES_INSTAGRAM_GRAPH_URL",
        "CONEXOES_INSTAGRAM_API_URL",
        "CONEXOES_INSTAGRAM_OAUTH_URL",
    ),
    "/google": (
        "CONEXOES_GOOGLE_OAUTH_URL",
        "CONEXOES_GOOGLE_TOKEN_URL",
        "CONEXOES_GOOGLE_API_URL",
    ),
}

# Platform credentials both sides get when a provider is the sandbox's: the server uses them as
# platform defaults, the sandbox fakes read the same CONEXOES_* names as their own settings.
SANDBOX_CREDENTIALS: dict[str, dict[str, str]] = {
    "/waha": {
        "CONEXOES_WAHA_API_KEY": "dev-waha-api-key",
        "CONEXOES_WAHA_WEBHOOK_HMAC_KEY": "dev-waha-webhook-hmac-key",
    },
    "/graph": {
        "CONEXOES_META_APP_ID": "1234567890123456",
        "CONEXOES_META_APP_SECRET": "dev-meta-app-secret",
        "CONEXOES_META_VERIFY_TOKEN": "dev-meta-verify-token",
    },
    "/instagram": {
        "CONEXOES_INSTAGRAM_APP_ID": "990011223344556",
        "CONEXOES_INSTAGRAM_APP_SECRET": "dev-instagram-app-secret",
    },
    "/google": {
        "CONEXOES_GOOGLE_CLIENT_ID": "dev-client-id.apps.googleusercontent.com",
        "CONEXOES_GOOGLE_CLIENT_SECRET": "dev-google-client-secret",
    },
}


@dataclass(frozen=True)
class DevPlan:
    server_env: dict[str, str]
    sandbox_env: dict[str, str]
    http_url: str
    sandbox_url: str | None = None
    # prefix -> the variables pointed at it
    sandboxed: dict[str, list[str]] = field(default_factory=dict)


def development_secrets(env: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """The development secrets for whatever `env` leaves unset: the user-token and service
    keys, and the encryption key kept in the data folder (created once, mode 0600)."""
    secrets: dict[str, str] = {}
    if not (env.get("CONEXOES_JWT_SECRET") or env.get("CONEXOES_JWT_PUBLIC_KEY")):
        secrets["CONEXOES_JWT_SECRET"] = DEV_JWT_SECRET
    if not env.get("CONEXOES_SERVICE_TOKEN_SECRET"):
        secrets["CONEXOES_SERVICE_TOKEN_SECRET"] = DEV_SERVICE_TOKEN_SECRET
    if not env.get("CONEXOES_ENCRYPTION_KEYS"):
        secrets["CONEXOES_ENCRYPTION_KEYS"] = development_key_spec(settings.data_dir)
    return secrets


def plan_environment(
    env: Mapping[str, str],
    settings: Settings,
    sandbox_addr: str | None,
    *,
    mounted: Iterable[str] | None,
) -> DevPlan:
    """The children's environment.

    Args:
        env: the environment `make run` was started with; what it sets always wins.
        settings: the same environment, parsed.
        sandbox_addr: host:port of the sandbox, or None when every provider URL is given.
        mounted: the prefixes the running sandbox reports; None before it runs (every known
            prefix is then assumed, which only matters for the sandbox's own environment).
    """
    http_url = f"http://{settings.http_addr}"
    server_env = dict(env)
    # The children are production entry points (`python -m server serve`), which refuse to
    # start without secrets: development ones are handed over explicitly, here only.
    server_env.update(development_secrets(env, settings))
    # Providers call back (webhooks, OAuth redirects) through the sidecar.
    server_env.setdefault("CONEXOES_PUBLIC_URL", http_url)
    public_url = server_env["CONEXOES_PUBLIC_URL"].rstrip("/")
    # Development: outbound webhooks may go to a receiver on this machine.
    server_env.setdefault("CONEXOES_WEBHOOK_ALLOW_PRIVATE_TARGETS", "1")
    # Development logs are read by people: text lines (production writes JSON).
    server_env.setdefault("CONEXOES_LOG_FORMAT", "text")
    server_env.setdefault("CONEXOES_ACCESS_LOG", "all")
    sandbox_env = dict(server_env)
    if sandbox_addr is None:
        return DevPlan(server_env, sandbox_env, http_url)
    sandbox_url = f"http://{sandbox_addr}"
    for credentials in SANDBOX_CREDENTIALS.values():
        for name, value in credentials.items():
            sandbox_env.setdefault(name, value)
    # The Graph fake delivers leadgen webhooks here (it sends none until told where).
    sandbox_env.setdefault("SANDBOX_META_WEBHOOK_URL", f"{public_url}/webhooks/meta-leads")
    sandbox_env.setdefault("SANDBOX_INSTAGRAM_WEBHOOK_URL", f"{public_url}/webhooks/instagram")
    available = set(SANDBOX_PREFIXES if mounted is None else mounted)
    sandboxed: dict[str, list[str]] = {}
    for prefix, names in SANDBOX_PREFIXES.items():
        unset = [name for name in names if not env.get(name)]
        if prefix not in available or not unset:
            continue
        sandboxed[prefix] = unset
        for name in unset:
            server_env[name] = f"{sandbox_url}{prefix}"
        for name, value in SANDBOX_CREDENTIALS[prefix].items():
            server_env.setdefault(name, sandbox_env.get(name, value))
    return DevPlan(server_env, sandbox_env, http_url, sandbox_url, sandboxed)


def mint_dev_tokens(settings: Settings, demo: DemoTenant, ttl: timedelta) -> dict[str, str]:
    """Tokens for the demo tenant's admin and member, a super admin (no tenant), and the CRM
    core's service identity for the demo tenant (the change feed's consumer)."""
    secret = settings.effective_jwt_secret
    if secret is None:  # RS256 only: tokens come from the identity provider
        return {}
    org = uuid.UUID(demo.organizacao_id)
    service = settings.effective_service_secret
    core = {} if service is None else {
        "crm_core": mint_token(service, role=Role.SERVICE, tenant_id=org, ttl=ttl)
    }  # fmt: skip
    return {
        "admin": mint_token(
            secret, role=Role.ADMIN, tenant_id=org, user_id=uuid.UUID(demo.admin_id), ttl=ttl
        ),
        "member": mint_token(
            secret, role=Role.MEMBER, tenant_id=org, user_id=uuid.UUID(demo.member_id), ttl=ttl
        ),
        "super_admin": mint_token(secret, role=Role.SUPER_ADMIN, ttl=ttl),
        **core,
    }


def write_env_file(settings: Settings, plan: DevPlan, tokens: Mapping[str, str]) -> Path:
    """`.data/dev.env`: `source` it in another terminal to use the CLI against this stack."""
    lines = [
        "# written by `make run`: source .data/dev.env",
        f"export CONEXOES_GRPC_ADDR={shlex.quote(settings.grpc_addr)}",
        f"export CONEXOES_HTTP_URL={shlex.quote(plan.http_url)}",
    ]
    if plan.sandbox_url:
        sandbox_addr = plan.sandbox_url.removeprefix("http://")
        lines.append(f"export CONEXOES_SANDBOX_ADDR={shlex.quote(sandbox_addr)}")
    names = {
        "admin": "CONEXOES_TOKEN",
        "member": "MEMBER_TOKEN",
        "super_admin": "SUPER_TOKEN",
        "crm_core": "CRM_CORE_TOKEN",
    }
    lines += [f"export {names[role]}={shlex.quote(tok)}" for role, tok in tokens.items()]
    path = settings.data_dir / "dev.env"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.chmod(path, 0o600)  # bearer tokens
    return path


def guide_text(
    settings: Settings,
    plan: DevPlan,
    demo: DemoTenant,
    tokens: Mapping[str, str],
    logs: Path,
    env_file: Path,
) -> str:
    url = plan.http_url
    fakes = ", ".join(f"{p} ({', '.join(n)})" for p, n in plan.sandboxed.items()) or "none"
    database = "DATABASE_URL" if settings.database_url else f"embedded in {settings.data_dir}/pg"
    out = [
        "",
        "Renove Conexoes is running. Ctrl-C stops everything.",
        f"  gRPC       {settings.grpc_addr}  (reflection + health; grpcurl -plaintext ... list)",
        f"  HTTP       {url}  (JSON gateway /api/v1/conexoes/..., OpenAPI {url}/api/openapi.json)",
    ]
    if plan.sandbox_url:
        out.append(f"  sandbox    {plan.sandbox_url}  fakes: {fakes}")
    out += [
        f"  database   {database}",
        f"  logs       {logs}/",
        "",
        f"Demo tenant {demo.organizacao_id}: admin {demo.admin_id}, member {demo.member_id}",
    ]
    if tokens:
        out += [
            "Dev tokens (24 h), also in " + str(env_file) + ":",
            f"  admin        {tokens['admin']}",
            f"  member       {tokens['member']}",
            f"  super admin  {tokens['super_admin']}",
            "  CRM core     $CRM_CORE_TOKEN (service identity of the demo tenant)",
        ]
    bearer = '-H "authorization: Bearer $CONEXOES_TOKEN"'
    out += [
        "",
        "Try it (in another terminal):",
        f"  source {env_file}                 # CONEXOES_TOKEN = the admin token",
        f"  curl -s {bearer} {url}/api/v1/conexoes/permissoes",
        f"  curl -s {bearer} {url}/api/v1/conexoes/whatsapp/status",
        "  .venv/bin/conexoes whatsapp connect     # QR in the terminal, then live status",
        "  .venv/bin/conexoes sandbox scan         # (third terminal) the sandbox phone scans it",
        "  .venv/bin/conexoes connections",
        f'  curl -sN -H "authorization: Bearer $CRM_CORE_TOKEN" -H "accept: application/x-ndjson"'
        f' "{url}/api/v1/conexoes/eventos:watch?after_sequence=0"   # the change feed',
        f'  grpcurl -plaintext -H "authorization: Bearer $CONEXOES_TOKEN" {settings.grpc_addr} '
        "renove.conexoes.v1.ConnectionsService/GetConnectionsOverview",
        "",
    ]
    return "\n".join(out)
