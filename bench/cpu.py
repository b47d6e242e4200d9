"""CPU time spent by each server-side process during a measurement: where a row's cost goes.

Read from /proc through psutil (user + system seconds); PostgreSQL is the postmaster and all
its backends together.
"""

from __future__ import annotations

from pathlib import Path

import psutil


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    return float(times.user + times.system)


def postgres_pid(pgdata: Path | None) -> int | None:
    if pgdata is None:
        return None
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def snapshot(pids: dict[str, int], postmaster: int | None) -> dict[str, float]:
    """CPU seconds so far per named process, and PostgreSQL's total (backends come and go:
    their time is counted while they live, which covers a measurement's pooled connections)."""
    seen = {name: _cpu(psutil.Process(pid)) for name, pid in pids.items() if psutil.pid_exists(pid)}
    if postmaster is not None and psutil.pid_exists(postmaster):
        root = psutil.Process(postmaster)
        seen["postgres"] = _cpu(root) + sum(_cpu(c) for c in root.children(recursive=True))
    return seen


def per_item_ms(before: dict[str, float], after: dict[str, float], items: int) -> dict[str, float]:
    """CPU milliseconds per request (or job) for each process between two snapshots."""
    return {
        name: round((after[name] - before.get(name, 0.0)) * 1000 / max(1, items), 3)
        for name in after
    }
