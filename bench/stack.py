"""The system under test, started the way `make run` starts it, each part in its own process:

    PostgreSQL   embedded, fresh under .data/bench (or DATABASE_URL), pinned to the server core
    sandbox      python -m sandbox            provider fakes (WAHA, Graph), load core
    server       python -m server serve       gRPC only (CONEXOES_WORKER_CONCURRENCY=0)
    sidecar      python -m webhooks_http      uvicorn + uvloop + httptools
    worker       python -m server worker      jobs; started and stopped per row

The queue's workers live in their own process so that the ingest row measures ingest alone
and the queue row can run 1 or 4 of them; rows that need processing start one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.procs import Cores, Proc, Reaper
from server.auth.caller import Role
from server.auth.tokens import mint_token
from server.devguide import plan_environment
from server.seed import DemoTenant
from server.settings import Settings

JWT_SECRET = "bench-jwt-secret-bench-jwt-secret-0123456789"
SERVICE_SECRET = "bench-service-secret-bench-service-secret-0123"
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def asyncpg_dsn(url: str) -> str:
    """SQLAlchemy's `postgresql+asyncpg://` URL as asyncpg wants it."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def grpc_serving(address: str, within: float = START_TIMEOUT_S) -> None:
    async with asyncio.timeout(within), grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.1)


async def http_ok(url: str, within: float = START_TIMEOUT_S) -> None:
    async with asyncio.timeout(within), httpx.AsyncClient(timeout=1.0) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)


async def port_open(address: str, within: float = START_TIMEOUT_S) -> None:
    host, _, port = address.rpartition(":")
    async with asyncio.timeout(within):
        while True:
            try:
                _, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


@dataclass
class Stack:
    cores: Cores
    reaper: Reaper
    data_dir: Path
    owner_url: str
    demo: DemoTenant
    server_env: dict[str, str]
    sandbox_env: dict[str, str]
    grpc_addr: str
    http_url: str
    sandbox_url: str
    smtp_certs: Any = None  # bench.smtp_sink.Certificates: the e-mail row's test CA
    embedded: Any = None
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        return asyncpg_dsn(self.owner_url)

    @property
    def tenant(self) -> uuid.UUID:
        return uuid.UUID(self.demo.organizacao_id)

    def token(self, role: Role = Role.ADMIN, user: uuid.UUID | str | None = None) -> str:
        if user is None:
            user = self.demo.admin_id if role is Role.ADMIN else self.demo.member_id
        return mint_token(
            SERVICE_SECRET if role is Role.SERVICE else JWT_SECRET,
            role=role,
            tenant_id=self.tenant if role is not Role.SUPER_ADMIN else None,
            user_id=uuid.UUID(str(user)),
            ttl=timedelta(hours=2),
        )

    def md(self, role: Role = Role.ADMIN, user: uuid.UUID | str | None = None) -> tuple:  # type: ignore[type-arg]
        return (("authorization", f"Bearer {self.token(role, user)}"),)

    def load_env(self) -> dict[str, str]:
        """What load generators inherit: this environment, PYTHONPATH unchanged."""
        return dict(os.environ)

    @property
    def server_pid(self) -> int:
        return self.procs["server"].pid

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the server-side processes (see bench.cpu)."""
        from bench.cpu import postgres_pid, snapshot

        names = ("server", "sidecar", "worker", "queue-worker")
        pids = {name: self.procs[name].pid for name in names if name in self.procs}
        pgdata = self.embedded.pgdata if self.embedded is not None else None
        return snapshot(pids, postgres_pid(pgdata))

    async def start_worker(
        self, concurrency: int, name: str = "worker", env: dict[str, str] | None = None
    ) -> Proc:
        env = {**self.server_env, "CONEXOES_WORKER_CONCURRENCY": str(concurrency), **(env or {})}
        proc = await self.reaper.spawn(name, ["server", "worker"], env, core=self.cores.server)
        await proc.wait_for_line(" running ", START_TIMEOUT_S)
        self.procs[name] = proc
        return proc

    async def stop_worker(self, name: str = "worker") -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            await self.reaper.stop(proc)

    async def close(self) -> None:
        await self.reaper.stop_all()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


def _pin_postgres(cores: Cores, pgdata: Path) -> None:
    """Pins the postmaster and its current children; backends forked later inherit it."""
    import psutil

    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    for proc in [postmaster, *postmaster.children(recursive=True)]:
        cores.pin_pid(proc.pid, cores.server)


async def _database(settings: Settings, cores: Cores) -> tuple[str, Any, DemoTenant]:
    from db.bootstrap import prepare_database
    from db.uow import Database
    from server.bootstrap import database_urls
    from server.seed import seed_demo

    owner_url, embedded = await database_urls(settings)
    if embedded is not None:
        _pin_postgres(cores, embedded.pgdata)
    db = Database(await prepare_database(owner_url, data_dir=settings.data_dir))
    try:
        demo = await seed_demo(db)
    finally:
        await db.dispose()
    return owner_url, embedded, demo


def _prepare_data_dir(data_dir: Path, *, fresh: bool) -> None:
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)  # a fresh database every run: no state from the last one
    data_dir.mkdir(parents=True, exist_ok=True)


async def start_stack(cores: Cores, data_dir: Path) -> Stack:
    """Starts everything; on failure whatever started is stopped before the error propagates."""
    from bench.smtp_sink import make_certificates
    from server.security.cipher import Keyring

    _prepare_data_dir(data_dir, fresh=not os.environ.get("DATABASE_URL"))
    smtp_certs = make_certificates(data_dir / "smtp")
    grpc_addr = f"127.0.0.1:{free_port()}"
    http_addr = f"127.0.0.1:{free_port()}"
    sandbox_addr = f"127.0.0.1:{free_port()}"
    base_env = {
        **os.environ,
        "CONEXOES_DATA_DIR": str(data_dir),
        "CONEXOES_GRPC_ADDR": grpc_addr,
        "CONEXOES_HTTP_ADDR": http_addr,
        "CONEXOES_JWT_SECRET": JWT_SECRET,
        "CONEXOES_SERVICE_TOKEN_SECRET": SERVICE_SECRET,
        "CONEXOES_ENCRYPTION_KEYS": Keyring.generate_key_spec("bench"),
        "CONEXOES_FRONTEND_URL": "http://frontend.bench",
        # Capacity is measured: the per-source limiter still runs, but never says 429.
        "CONEXOES_WEBHOOK_RATE_PER_SECOND": "1000000",
        "CONEXOES_WEBHOOK_RATE_BURST": "1000000",
        # The stream rows open many streams as one caller from one address on purpose.
        "CONEXOES_MAX_STREAMS_PER_CALLER": "100000",
        "CONEXOES_MAX_STREAMS_PER_ADDRESS": "100000",
        "CONEXOES_WORKER_POLL_SECONDS": "0.2",
        # As shipped: a log line for failed and slow calls only (`make run` logs every call).
        "CONEXOES_ACCESS_LOG": "errors",
        # The e-mail row's SMTP sink listens on loopback with a certificate from a bench CA.
        "CONEXOES_SMTP_ALLOW_PRIVATE_HOSTS": "1",
        "CONEXOES_SMTP_CA_FILE": str(smtp_certs.ca_file),
        # The sandbox answers at once: its own delays would hide ours.
        "SANDBOX_WAHA_START_DELAY_SECONDS": "0",
        "SANDBOX_WAHA_QR_ROTATION_SECONDS": "3600",
        "SANDBOX_WAHA_RETRY_DELAY_SCALE": "0.05",
    }
    for name in [n for n in base_env if n.startswith("CONEXOES_") and n.endswith("_URL")]:
        if name not in ("CONEXOES_FRONTEND_URL",):
            base_env.pop(name)  # provider URLs: the sandbox's, as `make run` wires them
    settings = Settings.from_env(base_env)
    # This process starts PostgreSQL, so it runs on the server core until then.
    if cores.server is not None:
        os.sched_setaffinity(0, {cores.server})
    owner_url, embedded, demo = await _database(settings, cores)
    if cores.load is not None:
        os.sched_setaffinity(0, {cores.load})
    base_env["DATABASE_URL"] = owner_url
    plan = plan_environment(
        base_env, settings, sandbox_addr, mounted=["/waha", "/graph", "/instagram", "/google"]
    )
    server_env = {**plan.server_env, "CONEXOES_WORKER_CONCURRENCY": "0"}
    stack = Stack(
        cores=cores,
        reaper=Reaper(cores, data_dir / "logs"),
        data_dir=data_dir,
        owner_url=owner_url,
        demo=demo,
        server_env=server_env,
        sandbox_env=plan.sandbox_env,
        grpc_addr=grpc_addr,
        http_url=plan.http_url,
        sandbox_url=f"http://{sandbox_addr}",
        smtp_certs=smtp_certs,
        embedded=embedded,
    )
    try:
        host, _, port = sandbox_addr.rpartition(":")
        argv = ["sandbox", "--host", host, "--port", port, "--log-level", "warning"]
        sandbox = await stack.reaper.spawn("sandbox", argv, plan.sandbox_env, core=cores.load)
        stack.procs["sandbox"] = sandbox
        await http_ok(f"{stack.sandbox_url}/")
        server = await stack.reaper.spawn(
            "server", ["server", "serve"], server_env, core=cores.server
        )
        stack.procs["server"] = server
        await grpc_serving(grpc_addr)
        sidecar = await stack.reaper.spawn(
            "sidecar", ["webhooks_http"], server_env, core=cores.server
        )
        stack.procs["sidecar"] = sidecar
        await http_ok(f"{stack.http_url}/readyz")
    except BaseException:
        await stack.close()
        raise
    return stack


def describe_machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "grpcio": grpc.__version__,
    }
