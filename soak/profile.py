"""How long and how hard the soak pushes, and when the faults come (seconds from the start)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    seconds: float  # steady load runs this long
    rates: dict[str, float]  # per stream, items per second
    burst_every: float  # a burst at 10x the steady rate starts this often...
    burst_seconds: float  # ...and lasts this long
    chaos_at: float  # the sandbox fails 30 % and hangs 5 % of calls from here...
    chaos_seconds: float  # ...for this long
    hang_seconds: float  # how long a hung call hangs before its 504
    kill_server_at: float
    kill_worker_at: float
    restart_postgres_at: float
    down_seconds: float  # a killed process comes back after this long
    settle_seconds: float  # after the last fault, latency counts as "outside" again
    drain_seconds: float  # at most this long for the queue to empty after the load

    def most(self, stream: str) -> int:
        """At most how many items `stream` starts (bursts included), for what is made
        beforehand (leads waiting in Graph, meetings)."""
        burst_share = self.burst_seconds / self.burst_every * 10
        return int(self.rates[stream] * self.seconds * (1 + burst_share)) + 5

    @property
    def fault_window(self) -> tuple[float, float]:
        start = min(
            self.chaos_at, self.kill_server_at, self.kill_worker_at, self.restart_postgres_at
        )
        end = max(
            self.chaos_at + self.chaos_seconds,
            self.kill_server_at + self.down_seconds,
            self.kill_worker_at + self.down_seconds,
            self.restart_postgres_at,
        )
        return start, end + self.settle_seconds


FULL = Profile(
    name="full",
    seconds=210,
    rates={
        "whatsapp_in": 5,
        "instagram_in": 2,
        "leadgen_in": 1.5,
        "calendar_in": 0.5,
        "whatsapp_out": 2,
        "instagram_out": 1,
        "capi_out": 2,
        "email_out": 1,
        "calendar_out": 0.5,
    },
    burst_every=45,
    burst_seconds=2,
    chaos_at=60,
    chaos_seconds=60,
    hang_seconds=12,
    kill_server_at=70,
    kill_worker_at=85,
    restart_postgres_at=100,
    down_seconds=3,
    settle_seconds=15,
    drain_seconds=150,
)

QUICK = Profile(
    name="quick",
    seconds=36,
    rates={
        "whatsapp_in": 4,
        "instagram_in": 1,
        "leadgen_in": 1,
        "calendar_in": 0.5,
        "whatsapp_out": 1,
        "instagram_out": 1,
        "capi_out": 1,
        "email_out": 1,
        "calendar_out": 0.5,
    },
    burst_every=15,
    burst_seconds=1,
    chaos_at=8,
    chaos_seconds=12,
    hang_seconds=3,
    kill_server_at=10,
    kill_worker_at=13,
    restart_postgres_at=16,
    down_seconds=2,
    settle_seconds=5,
    # Past the longest breaker reset (meta_audiences, 120 s) that the chaos may open: jobs
    # postponed until its probe are still waiting, not lost.
    drain_seconds=150,
)
