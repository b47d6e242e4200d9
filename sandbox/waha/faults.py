"""Fault injection and the request log: the knobs tests turn to play an unhealthy WAHA."""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.waha.errors import WahaHttpError, injected
from sandbox.waha.models import JSON


@dataclass
class Fault:
    """Answer the next `remaining` API calls whose path starts with `path` with `status`."""

    status: int
    remaining: int
    retry_after: int | None = None
    path: str = "/api/"

    def to_json(self) -> JSON:
        return {
            "status": self.status,
            "remaining": self.remaining,
            "retryAfter": self.retry_after,
            "path": self.path,
        }


@dataclass
class FaultPlan:
    """Pending faults, added latency and the log of API calls the fake answered."""

    faults: list[Fault] = field(default_factory=list)
    latency_ms: int = 0
    requests: list[JSON] = field(default_factory=list)

    def take(self, path: str) -> WahaHttpError | None:
        """Consume one matching fault, oldest first, and return the error to answer."""
        for fault in self.faults:
            if path.startswith(fault.path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return injected(fault.status, fault.retry_after)
        return None

    def reset(self) -> None:
        self.faults.clear()
        self.latency_ms = 0
        self.requests.clear()
