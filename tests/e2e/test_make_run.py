"""`make run` (`python -m server dev`) as a newcomer meets it: it starts, the guide's token and
curl work, Ctrl-C stops everything, and a crashed child stops everything loudly.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest_asyncio

from db.bootstrap import drop_database
from tests.conftest import ROOT, unique_name

READY_LINE = b"Ctrl-C stops everything"


def _free_addr() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class Dev:
    process: asyncio.subprocess.Process
    data_dir: Path
    output: bytearray

    def env_file(self) -> dict[str, str]:
        values = {}
        for line in (self.data_dir / "dev.env").read_text().splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                values[name] = shlex.split(value)[0]
        return values

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()


@pytest_asyncio.fixture
async def dev(pg: Any, tmp_path: Path) -> AsyncIterator[Dev]:
    owner_url = pg.url_for(unique_name("conexoes_dev"))
    env = {
        **os.environ,
        "DATABASE_URL": owner_url,
        "CONEXOES_DATA_DIR": str(tmp_path),
        "CONEXOES_GRPC_ADDR": _free_addr(),
        "CONEXOES_HTTP_ADDR": _free_addr(),
        "CONEXOES_SANDBOX_ADDR": _free_addr(),
        "CONEXOES_JWT_SECRET": "make-run-test-secret-0123456789abcdef",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "dev",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = bytearray()
    assert process.stdout is not None
    async with asyncio.timeout(60):
        while READY_LINE not in output:
            chunk = await process.stdout.read(4096)
            assert chunk, f"make run ended before it was ready:\n{output.decode()}"
            output += chunk

    async def drain() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(4096):
            output.extend(chunk)

    reader = asyncio.create_task(drain())
    try:
        yield Dev(process, tmp_path, output)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await reader
        await drop_database(owner_url)


async def test_guide_token_and_curl_work_and_ctrl_c_stops_everything(dev: Dev) -> None:
    values = dev.env_file()
    async with httpx.AsyncClient(base_url=values["CONEXOES_HTTP_URL"], timeout=10) as http:
        auth = {"authorization": f"Bearer {values['CONEXOES_TOKEN']}"}
        members = await http.get("/api/v1/conexoes/permissoes", headers=auth)
        pipelines = await http.get("/api/v1/conexoes/crm/funis", headers=auth)
        document = await http.get("/api/openapi.json")
    assert members.status_code == 200, members.text
    # The demo tenant came from the CRM core through the directory.
    assert [m["nome"] for m in members.json()["members"]] == ["Marcos Vendedor"]
    assert pipelines.status_code == 200, pipelines.text
    (funil,) = pipelines.json()["pipelines"]
    assert funil["nome"] == "Vendas" and len(funil["etapas"]) == 5
    assert members.json()["total_size"] == 1
    assert document.status_code == 200
    children = dev.children()
    assert {" ".join(c.cmdline()[1:3]) for c in children} == {
        "-m sandbox",
        "-m server",
        "-m webhooks_http",
    }

    dev.process.send_signal(signal.SIGINT)
    async with asyncio.timeout(20):
        code = await dev.process.wait()

    assert code == 0, dev.output.decode()
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


async def test_a_crashed_child_stops_everything_with_its_last_lines(dev: Dev) -> None:
    server = next(c for c in dev.children() if c.cmdline()[1:3] == ["-m", "server"])
    others = [c for c in dev.children() if c.pid != server.pid]
    server.kill()
    async with asyncio.timeout(20):
        code = await dev.process.wait()
    await asyncio.sleep(0.1)
    assert code == 1
    assert b"server exited" in dev.output
    assert not [c for c in others if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
