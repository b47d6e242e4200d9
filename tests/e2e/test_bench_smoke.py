"""`python -m bench --quick` runs end to end and yields every row with positive figures.

No timing assertions: speed is `make bench`'s business. This only checks the
harness: the real stack starts, every row produces its figures beside a baseline, the JSON is
written, and no process is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROWS = ("1.", "2a.", "2b.", "2c.", "3.", "4.", "5a.", "5b.", "6.", "7.", "8.", "9.", "10.", "11.")


def test_quick_bench_produces_every_row() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        # Under .data (short: PostgreSQL's socket path is limited); the bench wipes it first.
        [sys.executable, "-m", "bench", "--quick", "--data-dir", ".data/bench-smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    path = Path(done.stdout.strip().splitlines()[-1].removeprefix("results: "))
    try:
        report = json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)
    assert not report["failures"]
    figures = report["figures"]
    for prefix in ROWS:
        assert any(f["row"].startswith(prefix) for f in figures), prefix
    for figure in figures:
        assert figure["ours"] > 0 and figure["baseline"] > 0, figure
        assert figure["ratio"] > 0, figure
