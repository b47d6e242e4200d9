"""What every scenario gets: the running stack, the load profile, the report, and helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import httpx
from renove.conexoes.v1 import whatsapp_service_pb2 as wpb
from renove.conexoes.v1 import whatsapp_service_pb2_grpc as wpb_grpc

from bench.procs import Proc, run_load
from bench.profile import Profile
from bench.report import Report
from bench.stack import Stack, free_port, port_open
from server.auth.caller import Role

T = TypeVar("T")
MEMBER_PHONE = "5511999990001"


async def poll(check: Callable[[], Awaitable[T | None]], within: float = 30) -> T:
    async with asyncio.timeout(within):
        while True:
            value = await check()
            if value is not None:
                return value
            await asyncio.sleep(0.05)


@dataclass
class Context:
    stack: Stack
    profile: Profile
    report: Report
    http: httpx.AsyncClient
    channel: grpc.aio.Channel
    # Filled by `connect_member`: the demo member's connected WhatsApp session.
    session_name: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def whatsapp(self) -> wpb_grpc.WhatsAppServiceStub:
        return wpb_grpc.WhatsAppServiceStub(self.channel)

    @property
    def waha_url(self) -> str:
        return f"{self.stack.sandbox_url}/waha"

    @property
    def graph_url(self) -> str:
        return f"{self.stack.sandbox_url}/graph"

    async def load(self, module: str, config: dict[str, Any], within: float) -> dict[str, Any]:
        return await run_load(self.stack.reaper, module, config, self.stack.load_env(), within)

    async def waha_sessions(self) -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.waha_url}/_control/sessions")
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()
        return rows

    async def wait_waha(self, name: str, status: str) -> None:
        async def check() -> bool | None:
            rows = await self.waha_sessions()
            return True if any(r["name"] == name and r["status"] == status for r in rows) else None

        await poll(check)

    async def connect(self, role: Role, user: str, phone: str) -> str:
        """Start a session, scan its QR from the sandbox phone, wait until connected (needs a
        worker: the status arrives as a WAHA webhook processed by a job)."""
        md = self.stack.md(role, user)
        started = await self.whatsapp.StartWhatsAppSession(
            wpb.StartWhatsAppSessionRequest(request_id=str(uuid.uuid4())), metadata=md
        )
        await self.wait_waha(started.session_name, "SCAN_QR_CODE")
        scan = await self.http.post(
            f"{self.waha_url}/_control/sessions/{started.session_name}/scan",
            json={"phone": phone, "pushName": "Bench"},
        )
        scan.raise_for_status()

        async def connected() -> bool | None:
            reply = await self.whatsapp.GetWhatsAppStatus(
                wpb.GetWhatsAppStatusRequest(), metadata=md
            )
            return True if reply.session.status == wpb.WAHA_SESSION_STATUS_CONNECTED else None

        await poll(connected)
        return str(started.session_name)

    async def connect_member(self) -> None:
        self.session_name = await self.connect(Role.MEMBER, self.stack.demo.member_id, MEMBER_PHONE)

    @contextlib.asynccontextmanager
    async def baseline(
        self, name: str, module: str, args: list[str], ready: str
    ) -> AsyncIterator[Proc]:
        """A bare baseline server on the server core, stopped when the block ends."""
        stack = self.stack
        proc = await stack.reaper.spawn(
            name, ["bench.baselines." + module, *args], stack.load_env(), core=stack.cores.server
        )
        try:
            await port_open(ready)
            yield proc
        finally:
            await stack.reaper.stop(proc)

    def baseline_address(self) -> str:
        return f"127.0.0.1:{free_port()}"


def config_arg(**values: Any) -> str:
    return json.dumps(values)
