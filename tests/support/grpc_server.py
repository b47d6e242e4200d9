"""An in-process server on a loopback port, built exactly as `python -m server serve` builds it."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import grpc

from server.app import GrpcApp
from server.auth.caller import Caller, Role
from server.auth.tokens import mint_token
from server.bootstrap import Deps, build_deps
from server.resilience.clock import Clock
from server.settings import REAL_PROVIDER_URLS, Settings

TEST_JWT_SECRET = "test-jwt-secret-test-jwt-secret-0123456789"
TEST_SERVICE_SECRET = "test-service-secret-test-service-secret-0123"
# One keyring for every server of a test run, as in a real deployment: global rows (platform
# credentials) written by one server must decrypt in the next.
TEST_ENCRYPTION_KEYS = (
    "test1:" + base64.urlsafe_b64encode(b"renove-conexoes-test-key-32bytes").decode()
)


# Nothing listens on port 1: a provider a test did not point at its sandbox fails fast and
# locally, never reaching the real internet.
UNREACHABLE = "http://127.0.0.1:1"


def test_settings(owner_url: str, data_dir: str, **overrides: object) -> Settings:
    base = Settings(
        database_url=owner_url,
        data_dir=Path(data_dir),
        jwt_secret=TEST_JWT_SECRET,
        service_token_secret=TEST_SERVICE_SECRET,
        encryption_keys=TEST_ENCRYPTION_KEYS,
        **{attr: UNREACHABLE for attr in REAL_PROVIDER_URLS},  # type: ignore[arg-type]
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class RunningServer:
    app: GrpcApp
    deps: Deps
    address: str
    channel: grpc.aio.Channel

    def token(self, caller: Caller) -> str:
        # Service tokens have a key of their own (the user-token key cannot mint them).
        secret = TEST_SERVICE_SECRET if caller.role is Role.SERVICE else TEST_JWT_SECRET
        return mint_token(
            secret, role=caller.role, tenant_id=caller.tenant_id, user_id=caller.user_id
        )

    def metadata(self, caller: Caller | None) -> tuple[tuple[str, str], ...]:
        return () if caller is None else (("authorization", f"Bearer {self.token(caller)}"),)

    def service_caller(self) -> Caller:
        return Caller(role=Role.SERVICE)

    def super_admin(self) -> Caller:
        return Caller(role=Role.SUPER_ADMIN, user_id=uuid.uuid4())


@asynccontextmanager
async def running_server(
    settings: Settings, *, clock: Clock | None = None
) -> AsyncIterator[RunningServer]:
    deps = await build_deps(settings, clock=clock)
    app = GrpcApp(deps)
    port = await app.start("127.0.0.1:0")
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    try:
        yield RunningServer(app=app, deps=deps, address=address, channel=channel)
    finally:
        await channel.close()
        await app.stop(grace=1.0)
