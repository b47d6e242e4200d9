"""The e-mail path on loopback: gRPC server (with its worker) -> real SMTP servers (aiosmtpd,
STARTTLS with a test CA, AUTH), a test DNS server for MX lookups, and the sidecar serving
the tracking pixel. On a database of its own: a worker of another test module would claim
our send jobs with its own settings."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from renove.conexoes.v1 import email_service_pb2 as pb
from renove.conexoes.v1 import email_service_pb2_grpc as pb_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Caller
from server.resilience.clock import SystemClock
from tests.support.grpc_server import RunningServer, running_server, test_settings
from tests.support.mail_servers import (
    SmtpServerHandle,
    dns_server,
    make_certificates,
    smtp_server,
)
from tests.support.whatsapp_stack import free_port
from webhooks_http.app import SidecarOptions, build_sidecar_app
from webhooks_http.ratelimit import RateLimitOptions
from webhooks_http.runner import serve_in_background

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]

# MX records the test DNS server answers (custom domains hosted by known providers).
MX_ZONES: dict[str, list[tuple[int, str]]] = {
    "cliente-workspace.com.br": [(10, "aspmx.l.google.com"), (20, "alt1.aspmx.l.google.com")],
    "cliente-m365.com.br": [(0, "cliente-m365-com-br.mail.protection.outlook.com")],
    "cliente-zoho.com.br": [(10, "mx.zoho.com"), (20, "mx2.zoho.com")],
    "cliente-locaweb.com.br": [(10, "mx.a.locaweb.com.br")],
    "cliente-proprio.com.br": [(10, "mail.cliente-proprio.com.br")],
}


class SkewClock(SystemClock):
    """The system clock, moved forward on demand: a retry comes due without waiting for it."""

    def __init__(self) -> None:
        self.skew = dt.timedelta()

    def now(self) -> dt.datetime:
        return super().now() + self.skew

    def advance(self, seconds: float) -> None:
        self.skew += dt.timedelta(seconds=seconds)


@dataclass
class EmailStack:
    server: RunningServer
    sidecar_url: str
    http: httpx.AsyncClient
    smtp: SmtpServerHandle  # certificate signed by the CA the server trusts
    rogue: SmtpServerHandle  # self-signed certificate
    clock: SkewClock

    @property
    def stub(self) -> pb_grpc.EmailServiceStub:
        return pb_grpc.EmailServiceStub(self.server.channel)

    def md(self, caller: Caller) -> tuple[tuple[str, str], ...]:
        return self.server.metadata(caller)


@asynccontextmanager
async def email_stack(owner_url: str, folder: Path) -> AsyncIterator[EmailStack]:
    certs = make_certificates(folder)
    sidecar_port = free_port()
    sidecar_url = f"http://127.0.0.1:{sidecar_port}"
    clock = SkewClock()
    async with AsyncExitStack() as stack:
        smtp = stack.enter_context(smtp_server(certs.trusted))
        rogue = stack.enter_context(smtp_server(certs.untrusted))
        nameserver = await stack.enter_async_context(dns_server(MX_ZONES))
        settings = test_settings(
            owner_url,
            str(folder / "server"),
            public_url=sidecar_url,
            smtp_allow_private_hosts=True,
            smtp_ca_file=str(certs.ca_file),
            dns_nameservers=(nameserver,),
            smtp_timeout_seconds=1.0,
            worker_poll_seconds=0.1,
        )
        running = await stack.enter_async_context(running_server(settings, clock=clock))
        options = SidecarOptions(
            rate_limit=RateLimitOptions(rate_per_second=1000.0, burst=10_000),
            webhook_deadline_s=10.0,
        )
        sidecar = build_sidecar_app(settings, running.channel, options=options)
        await stack.enter_async_context(serve_in_background(sidecar, port=sidecar_port))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        yield EmailStack(running, sidecar_url, http, smtp, rogue, clock)


async def poll(check: Callable[[], Awaitable[T | None]], within: float = 10) -> T:
    """Await `check()` until it returns something other than None (or fail after `within` s)."""
    async with asyncio.timeout(within):
        while True:
            value = await check()
            if value is not None:
                return value
            await asyncio.sleep(0.05)


async def sent_state(
    stub: pb_grpc.EmailServiceStub, md: Metadata, email_id: str, status: int
) -> pb.SentEmail:
    """The sent e-mail once it reached `status` (what GetSentEmail says)."""

    async def check() -> pb.SentEmail | None:
        got = await stub.GetSentEmail(pb.GetSentEmailRequest(id=email_id), metadata=md)
        return got.email if got.email.status == status else None

    return await poll(check)


async def job_of(owner_engine: AsyncEngine, tenant: uuid.UUID, job_id: str) -> Any:
    async with owner_engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT status, tentativas FROM eventos_pendentes"
                    " WHERE id = :id AND organizacao_id = :t"
                ),
                {"id": job_id, "t": tenant},
            )
        ).one()


async def job_done(owner_engine: AsyncEngine, tenant: uuid.UUID, job_id: str) -> Any:
    """The job once the worker recorded its outcome (after the handler's own writes)."""

    async def check() -> Any:
        row = await job_of(owner_engine, tenant, job_id)
        return row if row.status in ("completed", "failed") else None

    return await poll(check)


async def waiting_retry(owner_engine: AsyncEngine, tenant: uuid.UUID, job_id: str) -> Any:
    """The job after one failed attempt, waiting for its retry."""

    async def check() -> Any:
        row = await job_of(owner_engine, tenant, job_id)
        return row if row.status == "pending" and row.tentativas == 1 else None

    return await poll(check)
