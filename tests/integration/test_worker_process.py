"""A real `python -m server worker` killed mid-job: another worker finishes it, exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from db.uow import Database
from server.security.cipher import Keyring
from tests.conftest import ROOT, TEST_DATA, MigratedDatabase
from tests.support.grpc_server import TEST_JWT_SECRET
from tests.support.jobs import add_job, job_row
from tests.support.worker_jobs import LOG_ENV, OPERATION

LEASE_SECONDS = 2


def _worker_env(database: MigratedDatabase, log: Path, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONEXOES_")}
    env.update(
        DATABASE_URL=database.owner_url,
        # The fixtures' data folder: the app role keeps the password the tests use.
        CONEXOES_DATA_DIR=str(data_dir),
        CONEXOES_ENCRYPTION_KEYS=Keyring.generate_key_spec("worker1"),
        CONEXOES_JWT_SECRET=TEST_JWT_SECRET,
        CONEXOES_JOB_LEASE_SECONDS=str(LEASE_SECONDS),
        CONEXOES_WORKER_POLL_SECONDS="0.2",
        CONEXOES_WORKER_CONCURRENCY="2",
        CONEXOES_TEST_JOB_MODULE="tests.support.worker_jobs",
        CONEXOES_LOG_LEVEL="WARNING",
        **{LOG_ENV: str(log)},
    )
    return env


async def _start(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "worker",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


def _lines(log: Path, prefix: str) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if line.startswith(prefix)]


async def _wait_for_line(log: Path, prefix: str, count: int, within: float = 30) -> list[str]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = _lines(log, prefix)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {count} '{prefix}' lines in time: {_lines(log, '')}")


async def test_killed_worker_job_is_finished_once_by_another(
    database: MigratedDatabase, db: Database, make_tenant, owner_engine, tmp_path: Path
) -> None:
    tenant = await make_tenant()
    log = tmp_path / "jobs.log"
    env = _worker_env(database, log, TEST_DATA / "test-secrets")
    job_id = await add_job(
        db, tenant.id, OPERATION, payload={"hang_on_first_attempt": True}, max_attempts=5
    )
    first = await _start(env)
    second = None
    try:
        (started,) = await _wait_for_line(log, f"start {job_id}", 1)
        assert started.split()[2] == str(first.pid)
        first.send_signal(signal.SIGKILL)  # mid-job: no chance to release the lease
        await first.wait()

        second = await _start(env)
        await _wait_for_line(log, f"end {job_id}", 1)
        # The outcome is recorded in its own transaction after the handler returns.
        row = await job_row(owner_engine, job_id)
        deadline = time.monotonic() + 30
        while row.status == "processing" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            row = await job_row(owner_engine, job_id)
        assert (row.status, row.tentativas, row.lease_owner) == ("completed", 2, None)

        starts = [line.split() for line in _lines(log, "start")]
        ends = [line.split() for line in _lines(log, "end")]
        assert [(s[2], s[3]) for s in starts] == [(str(first.pid), "1"), (str(second.pid), "2")]
        assert [(e[2], e[3]) for e in ends] == [(str(second.pid), "2")]  # exactly once

        second.send_signal(signal.SIGTERM)  # drains and exits cleanly
        assert await asyncio.wait_for(second.wait(), 20) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
