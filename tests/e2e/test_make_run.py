"""`make run` (`python -m server dev`) as a newcomer meets it: it starts, the guide's token and
curl work, an OAuth flow leaves no authorization code in the logs, Ctrl-C stops everything,
and a crashed child is restarted, loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
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
from tests.support.ports import free_loopback_port

READY_LINE = b"Ctrl-C stops everything"


def _free_addr() -> str:
    return f"127.0.0.1:{free_loopback_port()}"


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
            # A test that failed before Ctrl-C: SIGKILL the supervisor and every child, so
            # no server, sidecar or sandbox outlives the test.
            family = psutil.Process(process.pid).children(recursive=True)
            process.kill()
            for child in family:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
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
        core = {
            "authorization": f"Bearer {values['CRM_CORE_TOKEN']}",
            "accept": "application/x-ndjson",
        }
        async with http.stream(
            "GET", "/api/v1/conexoes/eventos:watch?after_sequence=0", headers=core
        ) as feed:
            first = await anext(feed.aiter_lines())
    assert "snapshot" in first  # the guide's change-feed command works
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


async def test_a_crashed_child_is_restarted_and_says_so(dev: Dev) -> None:
    values = dev.env_file()
    server = next(c for c in dev.children() if c.cmdline()[1:3] == ["-m", "server"])
    others = {c.pid for c in dev.children() if c.pid != server.pid}
    server.kill()
    async with asyncio.timeout(60):
        while b"server is back" not in dev.output:
            assert dev.process.returncode is None, dev.output.decode()
            await asyncio.sleep(0.1)
    assert b"server exited" in dev.output and b"restarting server" in dev.output
    # The same stack serves again: the sidecar reconnects to the new server.
    async with httpx.AsyncClient(base_url=values["CONEXOES_HTTP_URL"], timeout=10) as http:
        auth = {"authorization": f"Bearer {values['CONEXOES_TOKEN']}"}
        assert (await http.get("/api/v1/conexoes/permissoes", headers=auth)).status_code == 200
    children = dev.children()
    assert others <= {c.pid for c in children} and server.pid not in {c.pid for c in children}

    dev.process.send_signal(signal.SIGINT)
    async with asyncio.timeout(20):
        assert await dev.process.wait() == 0


async def test_an_oauth_flow_leaves_no_authorization_code_in_the_logs(dev: Dev) -> None:
    values = dev.env_file()
    async with httpx.AsyncClient(base_url=values["CONEXOES_HTTP_URL"], timeout=10) as http:
        auth = {"authorization": f"Bearer {values['CONEXOES_TOKEN']}"}
        start = await http.get("/api/v1/conexoes/meta/auth-url", headers=auth)
        assert start.status_code == 200, start.text
        cookie = start.headers["set-cookie"].split(";", 1)[0]
        dialog = await http.get(start.json()["auth_url"])
        callback = httpx.URL(dialog.headers["location"])
        code = callback.params["code"]
        assert len(code) >= 8
        landed = await http.get(str(callback), headers={"cookie": cookie})
        assert "status=ok" in landed.headers["location"], landed.headers
    await asyncio.sleep(0.5)  # the children's log lines reach their files
    logs = list((dev.data_dir / "logs").glob("*.log"))
    assert logs
    for log in logs:
        text = log.read_text(encoding="utf-8", errors="replace")
        assert code not in text, f"authorization code in {log.name}"
        assert "client_secret=" not in text.replace("client_secret=[redacted]", "")
