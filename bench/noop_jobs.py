"""Worker hook for row 6's no-op drain (`CONEXOES_TEST_JOB_MODULE=bench.noop_jobs`): one
operation whose handler does nothing, so a drain of its jobs costs only the queue and the
worker (claim, attempt bookkeeping, completion) and can be set beside the bare loop.
"""

from __future__ import annotations

from server.bootstrap import Deps
from server.resilience.jobs import Job
from server.resilience.operations import Operation
from server.resilience.policies import POLICIES

OPERATION = "bench.noop"


def register_jobs(deps: Deps) -> None:
    async def nothing(job: Job) -> None:
        return None

    deps.jobs.register(Operation(OPERATION, POLICIES["capi_event"]), nothing)
