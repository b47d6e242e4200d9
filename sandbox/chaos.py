"""Random provider trouble for a while: a share of API calls fail, another share hang.

    POST /_control/chaos {"fail_rate": 0.3, "timeout_rate": 0.05, "seconds": 60,
                          "hang_seconds": 12, "seed": 7}
    GET  /_control/chaos  -> the plan and how many calls it failed or hung so far

Only provider API calls are touched (never `/_control` nor the index). A failed call answers
503 and a hung one 504 after `hang_seconds`, both before the fake sees the request: the
provider did nothing, so a retry is the only way the work gets done.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass
class Chaos:
    fail_rate: float = 0.0
    timeout_rate: float = 0.0
    hang_seconds: float = 12.0
    until: float = 0.0  # time.monotonic() when the trouble ends
    rng: random.Random = field(default_factory=random.Random)
    calls: int = 0
    failed: int = 0
    hung: int = 0

    def active(self) -> bool:
        return time.monotonic() < self.until

    def draw(self) -> str:
        """'fail', 'hang' or 'pass' for one call."""
        if not self.active():
            return "pass"
        self.calls += 1
        roll = self.rng.random()
        if roll < self.fail_rate:
            self.failed += 1
            return "fail"
        if roll < self.fail_rate + self.timeout_rate:
            self.hung += 1
            return "hang"
        return "pass"

    def to_json(self) -> dict[str, Any]:
        return {
            "active": self.active(),
            "fail_rate": self.fail_rate,
            "timeout_rate": self.timeout_rate,
            "remaining_seconds": max(0.0, round(self.until - time.monotonic(), 1)),
            "calls": self.calls,
            "failed": self.failed,
            "hung": self.hung,
        }


def _exempt(path: str) -> bool:
    return path == "/" or "/_control" in path


class ChaosMiddleware:
    def __init__(self, app: ASGIApp, chaos: Chaos) -> None:
        self.app = app
        self.chaos = chaos

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        verdict = self.chaos.draw()
        if verdict == "pass":
            await self.app(scope, receive, send)
            return
        if verdict == "hang":
            await asyncio.sleep(self.chaos.hang_seconds)
        status = 503 if verdict == "fail" else 504
        body = {"error": {"message": f"sandbox chaos: {verdict}", "code": status}}
        await JSONResponse(body, status)(scope, receive, send)


async def set_chaos(request: Request) -> Response:
    chaos: Chaos = request.app.state.chaos
    try:
        body = json.loads(await request.body() or b"{}")
        fail_rate = float(body.get("fail_rate", 0.0))
        timeout_rate = float(body.get("timeout_rate", 0.0))
        seconds = float(body.get("seconds", 60.0))
        hang = float(body.get("hang_seconds", chaos.hang_seconds))
    except (ValueError, TypeError, AttributeError) as exc:
        return JSONResponse({"error": f"bad chaos plan: {exc}"}, 400)
    if not (fail_rate >= 0 and timeout_rate >= 0 and fail_rate + timeout_rate <= 1):
        return JSONResponse({"error": "rates must be >= 0 and add up to at most 1"}, 400)
    chaos.fail_rate, chaos.timeout_rate, chaos.hang_seconds = fail_rate, timeout_rate, hang
    chaos.calls = chaos.failed = chaos.hung = 0
    if "seed" in body:
        chaos.rng.seed(body["seed"])
    chaos.until = time.monotonic() + max(0.0, seconds)
    return JSONResponse(chaos.to_json())


async def get_chaos(request: Request) -> Response:
    chaos: Chaos = request.app.state.chaos
    return JSONResponse(chaos.to_json())
