"""Child processes of the bench: pinned to a core, in their own process group, always reaped.

Two roles share the two cores (see `Cores`): the *server side* (our server, sidecar, worker,
PostgreSQL, and every bare baseline server) runs on one core, the *load side* (load
generators, the provider sandbox, this runner) on the other. Without `taskset` or with a single
core nothing is pinned and the report says so.

Every child gets its own session (process group) so that a Ctrl-C in the terminal reaches the
runner only, which then stops the children in order; `Reaper.stop_all` also runs from
`finally`, so no child outlives a failed run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STOP_GRACE_S = 12.0


@dataclass(frozen=True)
class Cores:
    """Which CPU each side gets; `None` means "not pinned"."""

    server: int | None
    load: int | None
    how: str

    @classmethod
    def detect(cls) -> Cores:
        count = os.cpu_count() or 1
        if shutil.which("taskset") is None:
            return cls(None, None, f"not pinned: taskset not found ({count} cores shared)")
        if count < 2:
            return cls(None, None, "not pinned: one core, server and load share it")
        return cls(
            0,
            1,
            f"taskset: server side (server, sidecar, worker, PostgreSQL, bare baselines) on "
            f"core 0; load generators, provider sandbox and runner on core 1 ({count} cores)",
        )

    def prefix(self, core: int | None) -> list[str]:
        return [] if core is None else ["taskset", "-c", str(core)]

    def pin_pid(self, pid: int, core: int | None) -> None:
        """Pins a running process (all its threads) to `core`."""
        if core is None:
            return
        import subprocess

        subprocess.run(
            ["taskset", "-a", "-c", "-p", str(core), str(pid)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Proc:
    """One long-running child (a server, the sandbox, a baseline); output goes to a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=30))
    process: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None
    _lines: list[str] = field(default_factory=list)

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with self.log_path.open("a", encoding="utf-8") as log:
            async for raw in self.process.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                self.tail.append(line)
                self._lines.append(line)
                log.write(line + "\n")
                log.flush()

    async def wait_for_line(self, needle: str, within: float) -> float:
        """Waits until the output has a line containing `needle`; returns when it was seen."""
        deadline = time.monotonic() + within
        seen = 0
        while time.monotonic() < deadline:
            for line in self._lines[seen:]:
                if needle in line:
                    return time.monotonic()
            seen = len(self._lines)
            if self.returncode is not None:
                raise RuntimeError(f"{self.name} exited ({self.returncode}): {self.last_lines()}")
            await asyncio.sleep(0.01)
        raise TimeoutError(f"{self.name}: no {needle!r} within {within:.0f}s")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def last_lines(self) -> str:
        return "\n  ".join(self.tail)

    def signal_group(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_GRACE_S)
        except TimeoutError:
            self.signal_group(signal.SIGKILL)
            await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2.0)


class Reaper:
    """Starts children pinned to a side and stops whatever is still running, newest first."""

    def __init__(self, cores: Cores, logs: Path) -> None:
        self.cores = cores
        self.logs = logs
        self.children: list[Proc] = []

    async def spawn(
        self, name: str, module_argv: list[str], env: dict[str, str], *, core: int | None
    ) -> Proc:
        argv = [*self.cores.prefix(core), sys.executable, "-m", *module_argv]
        proc = Proc(name, argv, env, self.logs / f"{name}.log")
        self.children.append(proc)
        await proc.start()
        return proc

    async def stop(self, proc: Proc) -> None:
        await proc.stop()
        if proc in self.children:
            self.children.remove(proc)

    async def stop_all(self) -> None:
        for proc in reversed(self.children):
            proc.signal_group(signal.SIGTERM)
        for proc in reversed(list(self.children)):
            await proc.stop()
        self.children.clear()


class LoadGen:
    """A load generator process: JSON config on stdin, JSON lines on stdout.

    A generator may print `{"ready": ...}` and then wait for a line on stdin (the runner reads
    the server's memory in between); its last line is `{"result": ...}`.
    """

    def __init__(
        self,
        reaper: Reaper,
        module: str,
        config: dict[str, Any],
        env: dict[str, str],
        *,
        server_side: bool = False,
    ) -> None:
        self.reaper = reaper
        # A bare baseline that runs to completion (the queue loop) belongs on the server core.
        self.core = reaper.cores.server if server_side else reaper.cores.load
        self.module = module
        self.config = config
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self._stderr: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoadGen:
        self.process = await asyncio.create_subprocess_exec(
            *self.reaper.cores.prefix(self.core),
            sys.executable,
            "-m",
            self.module,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=2**24,  # results carry every latency sample
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(self.config).encode() + b"\n")
        await self.process.stdin.drain()
        self._stderr = asyncio.create_task(self._read_stderr())
        return self

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            self.stderr_tail.append(raw.decode("utf-8", "replace").rstrip())

    async def message(self, within: float) -> dict[str, Any]:
        """The next JSON line the generator prints."""
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not line:
            await self.process.wait()
            if self._stderr is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._stderr, 2.0)
            tail = "\n  ".join(self.stderr_tail)
            raise RuntimeError(f"{self.module} exited ({self.process.returncode}):\n  {tail}")
        message: dict[str, Any] = json.loads(line)
        return message

    async def reply(self, text: str = "go") -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def result(self, within: float) -> dict[str, Any]:
        while True:
            message = await self.message(within)
            if "result" in message:
                result: dict[str, Any] = message["result"]
                return result

    async def __aexit__(self, *_: object) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()


async def run_load(
    reaper: Reaper,
    module: str,
    config: dict[str, Any],
    env: dict[str, str],
    within: float,
    *,
    server_side: bool = False,
) -> dict[str, Any]:
    """Runs a generator to completion and returns its result."""
    async with LoadGen(reaper, module, config, env, server_side=server_side) as gen:
        return await gen.result(within)
