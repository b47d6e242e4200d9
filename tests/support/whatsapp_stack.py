"""The whole WhatsApp path on loopback: WAHA sandbox (uvicorn) -> sidecar (uvicorn) -> gRPC
server(s) -> PostgreSQL, with WAHA's webhooks pointed at the sidecar.

The server must know the sidecar's URL (its public_url goes into WAHA's webhook config) and
the sidecar must know the server's channel, so the sidecar's port is picked first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import httpx
from renove.conexoes.v1 import whatsapp_service_pb2 as pb
from renove.conexoes.v1 import whatsapp_service_pb2_grpc as pb_grpc

from sandbox.app import build_sandbox_app
from sandbox.settings import SandboxSettings, WahaSettings
from server.auth.caller import Caller, Role
from server.resilience.clock import Clock
from server.settings import Settings
from tests.support.grpc_server import RunningServer, running_server, test_settings
from tests.support.ports import free_loopback_port
from webhooks_http.app import SidecarOptions, build_sidecar_app
from webhooks_http.ratelimit import RateLimitOptions
from webhooks_http.runner import serve_in_background

WAHA_API_KEY = "stack-waha-api-key"
# The ingress tests store this key as the platform's; using it too keeps both valid.
WAHA_HMAC_KEY = "waha-hmac-key-for-tests"
T = TypeVar("T")


def free_port() -> int:
    return free_loopback_port()


@dataclass
class Stack:
    waha_url: str  # the sandbox's WAHA mount, e.g. http://127.0.0.1:1234/waha
    sidecar_url: str
    servers: list[RunningServer]
    http: httpx.AsyncClient

    @property
    def server(self) -> RunningServer:
        return self.servers[0]

    def stub(self, index: int = 0) -> pb_grpc.WhatsAppServiceStub:
        return pb_grpc.WhatsAppServiceStub(self.servers[index].channel)

    def md(self, caller: Caller) -> tuple[tuple[str, str], ...]:
        return self.server.metadata(caller)

    async def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.http.post(f"{self.waha_url}/_control/{path}", json=body or {})
        response.raise_for_status()
        return response.json()

    async def control_get(self, path: str, **params: str) -> Any:
        response = await self.http.get(f"{self.waha_url}/_control/{path}", params=params)
        response.raise_for_status()
        return response.json()

    async def start(self, caller: Caller) -> pb.StartWhatsAppSessionResponse:
        response: pb.StartWhatsAppSessionResponse = await self.stub().StartWhatsAppSession(
            pb.StartWhatsAppSessionRequest(request_id=str(uuid.uuid4())), metadata=self.md(caller)
        )
        return response

    async def status(self, caller: Caller) -> pb.WhatsAppSession:
        response = await self.stub().GetWhatsAppStatus(
            pb.GetWhatsAppStatusRequest(), metadata=self.md(caller)
        )
        return response.session

    async def wait_status(
        self, caller: Caller, status: int, within: float = 10
    ) -> pb.WhatsAppSession:
        async def check() -> pb.WhatsAppSession | None:
            session = await self.status(caller)
            return session if session.status == status else None

        return await poll(check, within)

    async def connect(self, caller: Caller, phone: str, name: str = "Vendedor") -> str:
        """Start, wait for the QR, scan it from the 'phone'; returns the session name."""
        started = await self.start(caller)
        await wait_waha_status(self, started.session_name, "SCAN_QR_CODE")
        await self.control(
            f"sessions/{started.session_name}/scan", {"phone": phone, "pushName": name}
        )
        await self.wait_status(caller, pb.WAHA_SESSION_STATUS_CONNECTED)
        return started.session_name


async def poll(check: Callable[[], Awaitable[T | None]], within: float = 10) -> T:
    """Await `check()` until it returns something other than None (or fail after `within` s)."""
    async with asyncio.timeout(within):
        while True:
            value = await check()
            if value is not None:
                return value
            await asyncio.sleep(0.05)


async def wait_waha_status(stack: Stack, name: str, status: str) -> None:
    async def check() -> bool | None:
        rows = await stack.control_get("sessions")
        return True if any(r["name"] == name and r["status"] == status for r in rows) else None

    await poll(check)


def stack_settings(owner_url: str, data_dir: str, **overrides: Any) -> Settings:
    return test_settings(owner_url, data_dir, **overrides)


@asynccontextmanager
async def whatsapp_stack(
    owner_url: str,
    data_dir: str,
    *,
    servers: int = 1,
    waha: WahaSettings | None = None,
    clock: Clock | None = None,
    **settings_overrides: Any,
) -> AsyncIterator[Stack]:
    """Sandbox + sidecar + `servers` gRPC servers on one database; the first one sits behind
    the sidecar and is the only one running the worker (on `clock`, when given)."""
    waha_settings = waha or WahaSettings(
        api_key=WAHA_API_KEY,
        start_delay_seconds=0.05,
        qr_rotation_seconds=60.0,
        status_wait_seconds=3.0,
        webhook_retry_delay_scale=0.05,
    )
    sandbox_app = build_sandbox_app(SandboxSettings(waha=waha_settings))
    sidecar_port = free_port()
    sidecar_url = f"http://127.0.0.1:{sidecar_port}"
    async with AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(
            serve_in_background(sandbox_app, lifespan="on", http="h11", loop="asyncio")
        )
        waha_url = f"{sandbox.url}/waha"
        overrides: dict[str, Any] = {
            "waha_url": waha_url,
            "public_url": sidecar_url,
            "platform_defaults": {
                "waha.base_url": waha_url,
                "waha.api_key": waha_settings.api_key,
                "waha.webhook_hmac_key": WAHA_HMAC_KEY,
            },
            "stream_heartbeat_seconds": 0.5,
            "worker_poll_seconds": 0.2,
            **settings_overrides,
        }
        running = []
        for i in range(servers):
            # Only the first server (behind the sidecar) runs jobs: a change the others
            # stream can then only have reached them through PostgreSQL NOTIFY.
            extra = {} if i == 0 else {"worker_concurrency": 0}
            settings = stack_settings(owner_url, f"{data_dir}/s{i}", **{**overrides, **extra})
            first_clock = clock if i == 0 else None
            running.append(
                await stack.enter_async_context(running_server(settings, clock=first_clock))
            )
        options = SidecarOptions(
            rate_limit=RateLimitOptions(rate_per_second=1000.0, burst=10_000),
            webhook_deadline_s=10.0,
        )
        sidecar_app = build_sidecar_app(
            running[0].deps.settings, running[0].channel, options=options
        )
        await stack.enter_async_context(serve_in_background(sidecar_app, port=sidecar_port))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        # Stored (not only env defaults): any worker of the test session that claims one of
        # these jobs, whichever server fixture it belongs to, then calls this same sandbox.
        await _store_waha_credentials(running[0], overrides["platform_defaults"])
        try:
            yield Stack(waha_url=waha_url, sidecar_url=sidecar_url, servers=running, http=http)
        finally:
            await _store_waha_credentials(running[0], {})


async def _store_waha_credentials(server: RunningServer, values: dict[str, str]) -> None:
    """Stores (or, with no values, clears) the platform's WAHA credentials."""
    admin = Caller(role=Role.SUPER_ADMIN, user_id=uuid.uuid4())
    changes = {key: values.get(f"waha.{key}", "") for key in ("base_url", "api_key")}
    async with server.deps.db.unit_of_work(admin) as session:
        await server.deps.platform.update(session, "waha", changes, updated_by=admin.user_id)


def code_of(exc: BaseException) -> grpc.StatusCode | None:
    return exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
