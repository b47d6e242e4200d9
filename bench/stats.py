"""Percentiles and medians over latency samples (milliseconds)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted samples; 0.0 when there are none."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples_ms, 50), 3),
        "p99_ms": round(percentile(samples_ms, 99), 3),
        "n": len(samples_ms),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def median_of(runs: Sequence[dict[str, float]], key: str) -> float:
    """The median over runs of one figure (each run summarized on its own first)."""
    return round(median([run[key] for run in runs]), 3)
