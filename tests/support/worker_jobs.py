"""Test hook for `python -m server worker`: CONEXOES_TEST_JOB_MODULE=tests.support.worker_jobs.

Registers one job handler that appends "start"/"end" lines to the file named by
CONEXOES_TEST_JOB_LOG. A job whose payload says `hang_on_first_attempt` hangs on its first
attempt, so a test can kill the worker in the middle of it.
"""

from __future__ import annotations

import asyncio
import os

from server.bootstrap import Deps
from server.resilience.jobs import Job
from server.resilience.operations import Operation
from server.resilience.policies import POLICIES

OPERATION = "test.worker_process"
LOG_ENV = "CONEXOES_TEST_JOB_LOG"


def register_jobs(deps: Deps) -> None:
    log_path = os.environ[LOG_ENV]

    def note(what: str, job: Job) -> None:
        # One short append per line: lines from two processes never interleave.
        with open(log_path, "a") as log:
            log.write(f"{what} {job.id} {os.getpid()} {job.attempt}\n")

    async def handler(job: Job) -> None:
        note("start", job)
        if job.payload.get("hang_on_first_attempt") and job.attempt == 1:
            await asyncio.sleep(3600)
        note("end", job)

    deps.jobs.register(Operation(OPERATION, POLICIES["capi_event"]), handler)
