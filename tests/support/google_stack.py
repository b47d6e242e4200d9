"""The Google path on loopback: the sandbox's Google fake (uvicorn) <-> sidecar (uvicorn) <->
gRPC server (with its worker and scheduler) <-> PostgreSQL.

The server's public URL is HTTPS (Google refuses push channels to anything else); the
sandbox delivers pushes to the sidecar through a rewrite of that prefix, as a TLS-terminating
proxy would, and the test's browser follows redirects to it the same way.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import text

from sandbox.app import build_sandbox_app
from sandbox.google import GoogleFake
from sandbox.settings import SandboxSettings
from server.auth.caller import Caller, Role
from server.providers.google_oauth import GoogleOAuthClient, Pkce, authorization_url
from server.resilience.clock import Clock
from tests.support.grpc_server import RunningServer, running_server, test_settings
from tests.support.whatsapp_stack import free_port, poll
from webhooks_http.app import SidecarOptions, build_sidecar_app
from webhooks_http.ratelimit import RateLimitOptions
from webhooks_http.runner import serve_in_background

CLIENT_ID = "sandbox-google-client.apps.googleusercontent.com"
CLIENT_SECRET = "sandbox-google-client-secret"
PUBLIC = "https://crm.renove.test"
FRONTEND = "http://frontend.test"
CALENDAR_SCOPES = (
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/calendar.events",
    "openid",
    "email",
    "profile",
)

__all__ = ["GoogleStack", "connect", "follow_callback", "google_stack", "poll", "start_auth"]


@dataclass
class GoogleStack:
    google_url: str  # the sandbox's /google mount
    sidecar_url: str
    server: RunningServer
    http: httpx.AsyncClient
    fake: GoogleFake

    def md(self, caller: Caller) -> tuple[tuple[str, str], ...]:
        return self.server.metadata(caller)

    def internal(self, url: str) -> str:
        """A public URL as the proxy in front of the sidecar would route it."""
        return url.replace(PUBLIC, self.sidecar_url, 1) if url.startswith(PUBLIC) else url

    async def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.http.post(f"{self.google_url}/_control/{path}", json=body or {})
        response.raise_for_status()
        return response.json()

    async def control_get(self, path: str) -> Any:
        response = await self.http.get(f"{self.google_url}/_control/{path}")
        response.raise_for_status()
        return response.json()

    async def consent(self, auth_url: str, decision: str = "approve", scope: str = "") -> str:
        """The user at Google's consent screen; returns where Google sends the browser."""
        page = await self.http.get(auth_url)
        assert page.status_code == 200, page.text
        link = re.search(rf"id='{decision}' href='([^']+)'", page.text)
        assert link is not None, page.text
        answer = await self.http.get(link.group(1) + (f"&scope={scope}" if scope else ""))
        assert answer.status_code == 302
        return str(answer.headers["location"])

    async def grant(self) -> tuple[str, str]:
        """(access token, refresh token) of a fresh grant, straight from the sandbox."""
        pkce = Pkce.new()
        redirect = f"{PUBLIC}/api/v1/conexoes/google/callback"
        url = authorization_url(
            self.google_url,
            client_id=CLIENT_ID,
            redirect_uri=redirect,
            scopes=CALENDAR_SCOPES,
            state="s",
            pkce=pkce,
        )
        code = parse_qs(urlsplit(await self.consent(url)).query)["code"][0]
        tokens = await GoogleOAuthClient(
            self.http, token_url=self.google_url, api_url=self.google_url
        ).exchange_code(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            code=code,
            redirect_uri=redirect,
            verifier=pkce.verifier,
        )
        assert tokens.refresh_token
        return tokens.access_token, tokens.refresh_token

    async def expire_in(self, tenant: uuid.UUID, connection_id: uuid.UUID, minutes: float) -> None:
        """Moves a connection's access-token expiry (time passing, without a fake clock)."""
        at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
        async with self.server.deps.db.unit_of_work(
            Caller(role=Role.SERVICE, tenant_id=tenant)
        ) as session:
            await session.execute(
                text("UPDATE conexoes_google SET token_expires_at = :at WHERE id = :id"),
                {"at": at, "id": connection_id},
            )


@asynccontextmanager
async def google_stack(
    owner_url: str, data_dir: str, *, clock: Clock | None = None, **overrides: Any
) -> AsyncIterator[GoogleStack]:
    sandbox_app = build_sandbox_app(SandboxSettings())
    fake: GoogleFake = sandbox_app.state.fakes["/google"]
    sidecar_port = free_port()
    sidecar_url = f"http://127.0.0.1:{sidecar_port}"
    fake.push.rewrite = ((PUBLIC, sidecar_url),)
    async with AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(
            serve_in_background(sandbox_app, lifespan="on", http="h11", loop="asyncio")
        )
        google_url = f"{sandbox.url}/google"
        settings = test_settings(
            owner_url,
            data_dir,
            google_oauth_url=google_url,
            google_token_url=google_url,
            google_api_url=google_url,
            public_url=PUBLIC,
            frontend_url=FRONTEND,
            worker_poll_seconds=0.1,
            platform_defaults={
                "google.client_id": CLIENT_ID,
                "google.client_secret": CLIENT_SECRET,
            },
            **overrides,
        )
        server = await stack.enter_async_context(running_server(settings, clock=clock))
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
        yield GoogleStack(google_url, sidecar_url, server, http, fake)


async def start_auth(stack: GoogleStack, caller: Caller) -> tuple[str, str]:
    """The browser asks the gateway for the auth URL; returns it and the binding cookie."""
    answer = await stack.http.get(
        f"{stack.sidecar_url}/api/v1/conexoes/google/auth-url",
        headers={"authorization": f"Bearer {stack.server.token(caller)}"},
    )
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    name_value = cookie.split(";", 1)[0]
    assert name_value.startswith("renove_oauth_google_calendar=")
    return str(answer.json()["auth_url"]), name_value


async def follow_callback(
    stack: GoogleStack, location: str, cookie: str | None
) -> dict[str, list[str]]:
    """The browser follows Google's redirect to our callback (through the proxy)."""
    headers = {"cookie": cookie} if cookie else {}
    landed = await stack.http.get(stack.internal(location), headers=headers)
    assert landed.status_code == 302, landed.text
    target = landed.headers["location"]
    assert target.startswith("http://frontend.test/")
    return parse_qs(urlsplit(target).query)


async def connect(stack: GoogleStack, caller: Caller) -> None:
    url, cookie = await start_auth(stack, caller)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["access_type"] == ["offline"]
    assert query["prompt"] == ["consent"] and query["include_granted_scopes"] == ["true"]
    assert {"openid", "email", "profile"} <= set(query["scope"][0].split())
    outcome = await follow_callback(stack, await stack.consent(url), cookie)
    assert outcome["status"] == ["ok"], outcome
