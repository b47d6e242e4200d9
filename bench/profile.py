"""How much load each row sends: the full run (`make bench`) and `--quick` (the smoke test)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    runs: int  # each figure is the median of this many runs (slow rows may use fewer)
    # 1. ingest: closed loop at `ingest_concurrency` for `ingest_seconds` per run
    ingest_concurrency: int
    ingest_seconds: float
    # 2. webhook to result: a steady `result_rate` per second for `result_seconds`
    result_rate: float
    result_seconds: float
    lead_rate: float
    lead_seconds: float
    # 3. unary
    unary_concurrency: int
    unary_seconds: float
    # 4. status streams: subscriber counts, status changes per count, ramp batch
    stream_counts: tuple[int, ...]
    stream_changes: int
    stream_batch: int
    # 5. QR and OAuth: samples per run
    qr_samples: int
    oauth_samples: int
    # 6. queue: jobs per drain, worker concurrencies
    queue_jobs: int
    queue_workers: tuple[int, ...]
    # 7. change feed: changes missed while away, then sequential live changes, per run
    feed_missed: int = 50
    feed_samples: int = 200
    warmup_s: float = 1.0


FULL = Profile(
    name="full",
    runs=3,
    ingest_concurrency=64,
    ingest_seconds=6.0,
    result_rate=20.0,
    result_seconds=8.0,
    lead_rate=5.0,
    lead_seconds=8.0,
    unary_concurrency=32,
    unary_seconds=5.0,
    stream_counts=(1_000, 10_000),
    stream_changes=5,
    stream_batch=500,
    qr_samples=10,
    oauth_samples=10,
    queue_jobs=300,
    queue_workers=(1, 4),
)

QUICK = Profile(
    name="quick",
    runs=1,
    ingest_concurrency=16,
    ingest_seconds=1.5,
    result_rate=10.0,
    result_seconds=1.5,
    lead_rate=4.0,
    lead_seconds=1.5,
    unary_concurrency=8,
    unary_seconds=1.0,
    stream_counts=(100,),
    stream_changes=2,
    stream_batch=100,
    qr_samples=2,
    oauth_samples=2,
    queue_jobs=60,
    queue_workers=(1, 4),
    feed_missed=10,
    feed_samples=10,
    warmup_s=0.3,
)
