"""The sandbox's chaos plan: a share of provider calls fail or hang for a while, the control
endpoints never do, and the plan ends by itself."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from sandbox.app import build_sandbox_app
from sandbox.settings import SandboxSettings


@pytest.fixture
async def sandbox() -> AsyncIterator[httpx.AsyncClient]:
    app = build_sandbox_app(SandboxSettings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
    ) as client:
        yield client


async def test_a_share_of_calls_fail_and_hang_while_the_plan_lasts(
    sandbox: httpx.AsyncClient,
) -> None:
    plan = {"fail_rate": 0.3, "timeout_rate": 0.05, "seconds": 60, "hang_seconds": 0, "seed": 3}
    assert (await sandbox.post("/_control/chaos", json=plan)).status_code == 200

    statuses = Counter(
        [
            (await sandbox.get("/graph/v21.0/me", params={"access_token": "x"})).status_code
            for _ in range(400)
        ]
    )
    # The control side is never touched, whatever the plan.
    for _ in range(20):
        assert (await sandbox.get("/graph/_control/world")).status_code == 200

    state = (await sandbox.get("/_control/chaos")).json()
    assert state["calls"] == 400 and state["active"]
    assert statuses[503] == state["failed"] and statuses[504] == state["hung"]
    assert 0.2 < state["failed"] / 400 < 0.4 and 0 < state["hung"] / 400 < 0.1


async def test_the_plan_ends_and_bad_plans_are_refused(sandbox: httpx.AsyncClient) -> None:
    over = {"fail_rate": 0.9, "timeout_rate": 0.2}
    assert (await sandbox.post("/_control/chaos", json=over)).status_code == 400
    assert (await sandbox.post("/_control/chaos", content=b"{nope")).status_code == 400

    await sandbox.post("/_control/chaos", json={"fail_rate": 1.0, "seconds": 0})
    answer = await sandbox.get("/graph/v21.0/me", params={"access_token": "x"})
    assert answer.status_code != 503
    assert (await sandbox.get("/_control/chaos")).json() == {
        "active": False, "fail_rate": 1.0, "timeout_rate": 0.0, "remaining_seconds": 0.0,
        "calls": 0, "failed": 0, "hung": 0,
    }  # fmt: skip
