"""The whole Instagram path on loopback: the sandbox's Instagram fake (uvicorn) -> sidecar
(uvicorn) -> gRPC server (with its worker) -> PostgreSQL, with the fake's messaging webhooks
and the Instagram Login redirect pointed at the sidecar."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import connections_service_pb2_grpc as cpb_grpc
from renove.conexoes.v1 import instagram_service_pb2_grpc as pb_grpc
from sqlalchemy import text

from sandbox.app import build_sandbox_app
from sandbox.settings import SandboxSettings
from server.auth.caller import Caller
from tests.support.grpc_server import RunningServer, running_server, test_settings
from tests.support.whatsapp_stack import free_port
from webhooks_http.app import SidecarOptions, build_sidecar_app
from webhooks_http.ratelimit import RateLimitOptions
from webhooks_http.runner import serve_in_background

APP_ID = "990011223344556"
APP_SECRET = "sandbox-instagram-app-secret"
FRONTEND = "http://frontend.test"


@dataclass
class InstagramStack:
    instagram_url: str  # the sandbox's /instagram mount
    sidecar_url: str
    server: RunningServer
    http: httpx.AsyncClient

    @property
    def stub(self) -> pb_grpc.InstagramServiceStub:
        return pb_grpc.InstagramServiceStub(self.server.channel)

    @property
    def connections(self) -> cpb_grpc.ConnectionsServiceStub:
        return cpb_grpc.ConnectionsServiceStub(self.server.channel)

    def md(self, caller: Caller) -> tuple[tuple[str, str], ...]:
        return self.server.metadata(caller)

    async def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.http.post(f"{self.instagram_url}/_control/{path}", json=body or {})
        response.raise_for_status()
        return response.json()

    async def set_instagram_app(self) -> None:
        """The super admin stores the Instagram app (UpdatePlatformCredentials)."""
        await self.connections.UpdatePlatformCredentials(
            cpb.UpdatePlatformCredentialsRequest(
                provider=cpb.PLATFORM_PROVIDER_INSTAGRAM_APP,
                instagram_app=cpb.InstagramAppCredentialsUpdate(
                    app_id=APP_ID, app_secret=APP_SECRET
                ),
            ),
            metadata=self.md(self.server.super_admin()),
        )

    async def authorize(self, caller: Caller, **plan: Any) -> dict[str, str]:
        """The user gets the auth URL, the browser follows Instagram Login and the sidecar's
        callback; returns the query of the frontend page the browser lands on."""
        if plan:
            await self.control("dialog", plan)
        callback = await self.login(caller)
        landed = await self.http.get(callback)
        assert landed.status_code in (302, 303, 307), landed.text
        location = landed.headers["location"]
        assert location.startswith(FRONTEND)
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    async def login(self, caller: Caller) -> str:
        """The browser asks the gateway for the auth URL (getting the binding cookie) and goes
        through Instagram Login; returns the callback URL Instagram redirects to."""
        token = self.server.token(caller)
        answer = await self.http.get(
            f"{self.sidecar_url}/api/v1/conexoes/instagram/auth-url",
            headers={"authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, answer.text
        login = answer.json()["auth_url"]
        assert login.startswith(self.instagram_url)
        answer = await self.http.get(login)
        assert answer.status_code == 302
        callback = str(answer.headers["location"])
        assert callback.startswith(self.sidecar_url)
        assert callback.endswith("#_") or "error=access_denied" in callback
        return callback

    async def dm(self, **body: Any) -> dict[str, Any]:
        made: dict[str, Any] = await self.control("dm", body)
        return made

    async def drain(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.control("webhooks/drain")
        return result


@asynccontextmanager
async def instagram_stack(
    owner_url: str, data_dir: str, **overrides: Any
) -> AsyncIterator[InstagramStack]:
    sandbox_app = build_sandbox_app(SandboxSettings())
    fake = sandbox_app.state.fakes["/instagram"]
    # Meta retries for 36 h; here a failed delivery is retried within milliseconds.
    fake.state.dispatcher.retry_delays = lambda: (0.05, 0.2)
    sidecar_port = free_port()
    sidecar_url = f"http://127.0.0.1:{sidecar_port}"
    async with AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(
            serve_in_background(sandbox_app, lifespan="on", http="h11", loop="asyncio")
        )
        instagram_url = f"{sandbox.url}/instagram"
        settings = test_settings(
            owner_url,
            data_dir,
            instagram_graph_url=instagram_url,
            instagram_api_url=instagram_url,
            instagram_oauth_url=instagram_url,
            public_url=sidecar_url,
            frontend_url=FRONTEND,
            worker_poll_seconds=0.1,
            **overrides,
        )
        server = await stack.enter_async_context(running_server(settings))
        sidecar_app = build_sidecar_app(
            server.deps.settings,
            server.channel,
            options=SidecarOptions(
                rate_limit=RateLimitOptions(rate_per_second=1000.0, burst=10_000),
                webhook_deadline_s=10.0,
            ),
        )
        await stack.enter_async_context(serve_in_background(sidecar_app, port=sidecar_port))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        await http.post(
            f"{instagram_url}/_control/app",
            json={"webhook_url": f"{sidecar_url}/webhooks/instagram"},
        )
        try:
            yield InstagramStack(instagram_url, sidecar_url, server, http)
        finally:
            # Platform credentials are global: leave none behind for other tests.
            async with server.deps.db.system() as session:
                await session.execute(
                    text("DELETE FROM platform_credentials WHERE provider = 'instagram'")
                )
