"""`python -m bench [--quick] [--rows 1,3]`: see bench/README.md."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

# grpc logs an INFO line on every fork while a channel is open (load generators are forked).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from bench.profile import FULL, QUICK
from bench.report import plain_table, print_report
from bench.runner import ROWS, main_async


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (< 90 s): smoke test")
    parser.add_argument("--rows", default=",".join(sorted(ROWS)), help="e.g. 1,3 (default: all)")
    parser.add_argument("--data-dir", default=".data/bench", type=Path)
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {sorted(ROWS)}")
    profile = QUICK if args.quick else FULL
    try:
        report = asyncio.run(main_async(profile, rows, args.data_dir))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; every process was stopped", file=sys.stderr)
        return 130
    print_report(report)
    if args.markdown:
        print(plain_table(report))
    path = report.write()
    print(f"results: {path}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
