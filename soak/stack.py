"""The soak's system: the bench stack (PostgreSQL, sandbox, server, sidecar) grown to two server
replicas behind the sidecar, two worker processes, and the faults the soak plays on them.

The sidecar's gRPC target names both replicas (`ipv4:a,b`): when the one it uses dies, the
channel moves to the other and the webhooks in flight get a 5xx the provider retries.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.procs import Proc
from bench.stack import Stack, free_port, grpc_serving, http_ok

WORKER_CONCURRENCY = 4
RESTART_ATTEMPTS = 10


@dataclass
class SoakStack:
    base: Stack
    server_module: list[str]  # `["server", "serve"]` or the deliberate-bug wrapper
    replicas: dict[str, str] = field(default_factory=dict)  # proc name -> gRPC address
    events: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, what)
    restarted_postgres: bool = False

    @property
    def grpc_target(self) -> str:
        return "ipv4:" + ",".join(self.replicas.values())

    def note(self, what: str) -> None:
        self.events.append((time.monotonic(), what))
        print(f"[soak {time.strftime('%H:%M:%S')}] {what}", flush=True)

    async def start_replica(self, name: str, address: str) -> Proc:
        env = {**self.base.server_env, "CONEXOES_GRPC_ADDR": address}
        stack = self.base
        proc = await stack.reaper.spawn(name, self.server_module, env, core=stack.cores.server)
        stack.procs[name] = proc
        await _serving(proc, address)
        self.replicas[name] = address
        return proc

    async def start_sidecar(self) -> None:
        stack = self.base
        env = {**stack.server_env, "CONEXOES_GRPC_ADDR": self.grpc_target}
        sidecar = await stack.reaper.spawn(
            "sidecar", ["webhooks_http"], env, core=stack.cores.server
        )
        stack.procs["sidecar"] = sidecar
        await http_ok(f"{stack.http_url}/readyz")

    async def start_worker(self, name: str) -> Proc:
        return await self.base.start_worker(WORKER_CONCURRENCY, name)

    async def sigkill(self, name: str) -> None:
        proc = self.base.procs.pop(name)
        proc.signal_group(signal.SIGKILL)
        assert proc.process is not None
        await proc.process.wait()
        if proc in self.base.reaper.children:
            self.base.reaper.children.remove(proc)
        self.note(f"SIGKILL {name} (pid {proc.pid})")

    async def kill_and_restart_server(self, name: str, down_for: float) -> None:
        address = self.replicas[name]
        await self.sigkill(name)
        await asyncio.sleep(down_for)
        await self._supervise(name, lambda: self.start_replica(name, address))
        self.note(f"{name} serving again")

    async def kill_and_restart_worker(self, name: str, down_for: float) -> None:
        await self.sigkill(name)
        await asyncio.sleep(down_for)
        await self._supervise(name, lambda: self.start_worker(name))
        self.note(f"{name} running again")

    async def _supervise(self, name: str, start: Callable[[], Awaitable[Proc]]) -> None:
        """Starts again until it stays up, as a process supervisor would (a process that
        starts while PostgreSQL restarts exits on its first query)."""
        for attempt in range(1, RESTART_ATTEMPTS + 1):
            try:
                await start()
                return
            except RuntimeError as exc:
                self.base.procs.pop(name, None)
                self.note(f"{name} exited at start (attempt {attempt}): {str(exc)[-120:]}")
                await asyncio.sleep(1.0)
        raise RuntimeError(f"{name} did not stay up after {RESTART_ATTEMPTS} starts")

    async def restart_postgres(self) -> None:
        """`pg_ctl restart -m fast`: every connection is cut, the server comes back."""
        if self.base.embedded is None:
            self.note("PostgreSQL restart skipped: DATABASE_URL points at an outside server")
            return
        self.note("restarting PostgreSQL")
        if await self._pg_ctl("restart") != 0:
            raise RuntimeError("pg_ctl restart failed")
        self.restarted_postgres = True
        self.note("PostgreSQL back")

    async def stop_restarted_postgres(self) -> None:
        """The embedded handle stops the postmaster it started and takes one a restart put
        in its place for stopped already: this run stops that one itself."""
        embedded = self.base.embedded
        pid_file = embedded.pgdata / "postmaster.pid" if embedded is not None else None
        if self.restarted_postgres and pid_file is not None and pid_file.exists():
            await self._pg_ctl("stop")

    async def _pg_ctl(self, action: str) -> int:
        embedded = self.base.embedded
        assert embedded is not None
        return await embedded.pg_ctl(action)


async def _serving(proc: Proc, address: str) -> None:
    """Until the replica serves; RuntimeError when it exits first (one that starts while
    PostgreSQL restarts fails its migrations check and exits: the supervisor starts it again)."""
    serving = asyncio.create_task(grpc_serving(address))
    try:
        while not serving.done():
            if proc.returncode is not None:
                raise RuntimeError(f"{proc.name} exited ({proc.returncode}): {proc.last_lines()}")
            await asyncio.wait({serving}, timeout=0.2)
        serving.result()
    finally:
        serving.cancel()


async def grow(base: Stack, server_module: list[str]) -> SoakStack:
    """Replaces the bench's single server and sidecar with two replicas and a sidecar that
    knows both, and starts two workers."""
    soak = SoakStack(base, server_module)
    for name in ("sidecar", "server"):
        proc = base.procs.pop(name)
        await base.reaper.stop(proc)
    await soak.start_replica("server-a", base.grpc_addr)
    await soak.start_replica("server-b", f"127.0.0.1:{free_port()}")
    await soak.start_sidecar()
    for name in ("worker-1", "worker-2"):
        await soak.start_worker(name)
    soak.note(f"two server replicas ({soak.grpc_target}), the sidecar, two workers")
    return soak
