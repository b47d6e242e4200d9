"""Uptime and reconnection time of one connection from its status history: a pure function.

A connection is observed from the first time it was up (a setup that never connected is not
downtime) until it was removed; within that, every second is up or down. A down spell is a
reconnection when it ends up again inside the period.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

UP_STATUSES = frozenset({"connected", "active"})
REMOVED = "removed"


@dataclass(frozen=True)
class Change:
    at: dt.datetime
    status: str


@dataclass
class Availability:
    status: str = ""
    observed_s: float = 0.0
    up_s: float = 0.0
    disconnections: int = 0
    reconnection_spells: list[float] = field(default_factory=list)

    @property
    def uptime_ratio(self) -> float:
        return self.up_s / self.observed_s if self.observed_s > 0 else 1.0

    @property
    def mean_reconnection_s(self) -> float:
        spells = self.reconnection_spells
        return sum(spells) / len(spells) if spells else 0.0


def availability(changes: Sequence[Change], start: dt.datetime, end: dt.datetime) -> Availability:
    """`changes`: the connection's history in time order (any before `start` included, so the
    status at `start` is known)."""
    result = Availability()
    in_service = False  # has been up at least once (up to this point)
    down_since: dt.datetime | None = None
    for i, change in enumerate(changes):
        if change.at >= end:
            break
        result.status = change.status
        following = changes[i + 1].at if i + 1 < len(changes) else end
        seg_start, seg_end = max(change.at, start), min(following, end)
        up = change.status in UP_STATUSES
        if up:
            if down_since is not None and change.at >= start:
                result.reconnection_spells.append((change.at - down_since).total_seconds())
            in_service, down_since = True, None
        elif change.status == REMOVED:
            in_service, down_since = False, None
        elif in_service and down_since is None:
            down_since = change.at
            if change.at >= start:
                result.disconnections += 1
        if in_service and seg_end > seg_start:
            length = (seg_end - seg_start).total_seconds()
            result.observed_s += length
            if up:
                result.up_s += length
    return result
