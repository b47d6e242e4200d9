"""Bad input at the HTTP edge is the client's error: forged page tokens, oversized or
malformed bearer tokens. Through the real sidecar and JSON gateway to the test server."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import jwt
import pytest

from server.auth.caller import Caller, Role
from server.auth.tokens import mint_token
from tests.conftest import MakeCaller, MakeTenant
from tests.integration.ingress_helpers import running_sidecar, sidecar_settings
from tests.support.grpc_server import RunningServer
from webhooks_http.app import SidecarOptions, build_sidecar_app
from webhooks_http.runner import serve_in_background


def _token(cursor: object) -> str:
    raw = json.dumps(cursor).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FORGED = {
    "not-base64": "!!!not a token!!!",
    "not-an-object": _token([1, 2, 3]),
    "naive-time": _token({"at": "2026-01-01T00:00:00", "id": str(uuid.uuid4())}),
    "wrong-types": _token({"at": [1], "id": {"x": 1}, "o": "ten"}),
    "huge-offset": _token({"o": 10**30, "at": 10**30}),
    "negative-offset": _token({"o": -5}),
    "nul-in-a-key": _token({"at": "2026-01-01T00:00:00+00:00", "id": "\u0000"}),
    "deep": base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode(),
    "long": "A" * 20_000,
}
LISTS = [
    "/api/v1/conexoes/auditoria",
    "/api/v1/conexoes/alertas",
    "/api/v1/conexoes/eventos-falhos",
    "/api/v1/conexoes/crm/funis",
    "/api/v1/conexoes/crm/campos",
    "/api/v1/conexoes/webhooks-saida",
    "/api/v1/conexoes/whatsapp/sessoes",
    "/api/v1/conexoes/whatsapp/conversas",
    "/api/v1/conexoes/instagram/conversas",
    "/api/v1/conexoes/meta/capi/logs",
    "/api/v1/conexoes/meta/formularios",
    "/api/v1/conexoes/meta/audiences",
]


@pytest.fixture(scope="module")
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with running_sidecar(server) as sidecar, httpx.AsyncClient(base_url=sidecar.url) as c:
        yield c


@pytest.mark.parametrize("path", LISTS)
async def test_a_forged_page_token_is_400_on_every_list(
    http: httpx.AsyncClient,
    server: RunningServer,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    path: str,
) -> None:
    admin = make_caller(await make_tenant(), Role.ADMIN)
    headers = {"authorization": f"Bearer {server.token(admin)}"}
    for name, token in FORGED.items():
        reply = await http.get(path, params={"page_token": token}, headers=headers)
        assert reply.status_code == 400, (name, reply.status_code, reply.text[:300])
        assert reply.json()["code"] in (3, 9), (name, reply.text[:300])


async def test_bearer_tokens_out_of_bounds_are_401(
    http: httpx.AsyncClient, server: RunningServer, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    path = "/api/v1/conexoes/permissoes"
    huge = "x" * 65_536
    reply = await http.get(path, headers={"authorization": f"Bearer {huge}"})
    assert reply.status_code in (401, 431), reply.text[:300]

    # A numeric string is not a NumericDate (RFC 7519 section 2): the token is refused.
    later = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    claims = {"role": "admin", "org": str(tenant.id), "sub": str(tenant.admin_id)}
    secret = server.deps.settings.effective_jwt_secret
    assert secret
    good = jwt.encode({**claims, "exp": later}, secret, algorithm="HS256")
    stringly = jwt.encode({**claims, "exp": str(later)}, secret, algorithm="HS256")
    assert (await http.get(path, headers={"authorization": f"Bearer {good}"})).status_code == 200
    refused = await http.get(path, headers={"authorization": f"Bearer {stringly}"})
    assert refused.status_code == 401, refused.text[:300]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/conexoes/meta/auth-url",
        "/api/v1/conexoes/google/auth-url",
        "/api/v1/conexoes/instagram/auth-url",
        "/api/v1/conexoes/email/google/auth-url",
    ],
)
async def test_return_to_is_validated_when_the_url_is_made(
    http: httpx.AsyncClient,
    server: RunningServer,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    path: str,
) -> None:
    admin = make_caller(await make_tenant(), Role.ADMIN)
    headers = {"authorization": f"Bearer {server.token(admin)}"}
    bad = ["https://evil.example/x", "//evil.example", "/a?status=ok", "/a#x", "/a\\b",
           "/" + "a" * 600, "relative/path", "/a b"]  # fmt: skip
    for value in bad:
        reply = await http.get(path, params={"return_to": value}, headers=headers)
        assert reply.status_code == 400, (value, reply.text[:300])
        violations = [
            v["field"] for d in reply.json()["details"] for v in d.get("field_violations", [])
        ]
        assert violations == ["return_to"], (value, reply.text[:300])


async def test_the_user_token_key_cannot_mint_the_service_identity(
    http: httpx.AsyncClient, server: RunningServer, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    path = "/api/v1/conexoes/crm/funis"
    user_key = server.deps.settings.jwt_secret
    assert user_key
    forged = mint_token(user_key, role=Role.SERVICE, tenant_id=tenant.id)
    refused = await http.get(path, headers={"authorization": f"Bearer {forged}"})
    assert refused.status_code == 401, refused.text[:300]
    genuine = server.token(Caller(role=Role.SERVICE, tenant_id=tenant.id))
    served = await http.get(path, headers={"authorization": f"Bearer {genuine}"})
    assert served.status_code == 200, served.text[:300]


async def test_the_gateway_503_while_the_server_is_down_names_no_internal_address() -> None:
    channel = grpc.aio.insecure_channel("127.0.0.1:9")
    app = build_sidecar_app(sidecar_settings(), channel, options=SidecarOptions())
    try:
        async with (
            serve_in_background(app) as sidecar,
            httpx.AsyncClient(base_url=sidecar.url) as client,
        ):
            reply = await client.get(
                "/api/v1/conexoes/permissoes", headers={"authorization": "Bearer x.y.z"}
            )
    finally:
        await channel.close()
    assert reply.status_code == 503
    assert int(reply.headers["retry-after"]) >= 1
    assert "127.0.0.1" not in reply.text and ":9" not in reply.text and "ipv4" not in reply.text
    assert reply.json()["details"][0]["reason"] == "SERVICE_UNAVAILABLE"
