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


_PG = "pg:"


def snapshot(pids: dict[str, int], postmaster: int | None) -> dict[str, float]:
    """CPU seconds so far per named process and per PostgreSQL process (`pg:<pid>`: backends
    come and go, so each is compared with itself; one that exits in between is not counted)."""
    seen = {name: _cpu(psutil.Process(pid)) for name, pid in pids.items() if psutil.pid_exists(pid)}
    if postmaster is not None and psutil.pid_exists(postmaster):
        root = psutil.Process(postmaster)
        for proc in [root, *root.children(recursive=True)]:
            seen[f"{_PG}{proc.pid}"] = _cpu(proc)
    return seen


def per_item_ms(before: dict[str, float], after: dict[str, float], items: int) -> dict[str, float]:
    """CPU milliseconds per request (or job) for each process between two snapshots, with
    every PostgreSQL process summed as `postgres`."""
    totals: dict[str, float] = {}
    for name, seconds in after.items():
        key = "postgres" if name.startswith(_PG) else name
        totals[key] = totals.get(key, 0.0) + seconds - before.get(name, 0.0)
    return {name: round(total * 1000 / max(1, items), 3) for name, total in totals.items()}
