"""`python -m soak [--quick] [--inject early-ack]`: see soak/README.md."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from soak.profile import FULL, QUICK
from soak.reconcile import Reconciliation, table
from soak.runner import run_soak

SERVERS = {"none": ["server", "serve"], "early-ack": ["soak.early_ack", "serve"]}


async def _main(args: argparse.Namespace) -> tuple[Reconciliation, dict[str, object]]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    profile = QUICK if args.quick else FULL
    return await run_soak(profile, args.data_dir, SERVERS[args.inject])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (2 to 4 minutes)")
    parser.add_argument(
        "--inject",
        choices=sorted(SERVERS),
        default="none",
        help="early-ack: servers that answer WAHA webhooks before storing them",
    )
    parser.add_argument("--data-dir", default=".data/soak", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    began = time.monotonic()
    try:
        result, facts = asyncio.run(_main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; every process was stopped", file=sys.stderr)
        return 130
    machine = facts["machine"]
    assert isinstance(machine, dict)
    print()
    print(f"soak ({'quick' if args.quick else 'full'}, inject={args.inject}) on "
          f"{machine['nproc']} x {machine['cpu_model']}, {machine['memory_gib']} GiB, "
          f"Python {machine['python']}; {facts['cores']}")  # fmt: skip
    print(table(result))
    print(f"took {time.monotonic() - began:.0f}s")
    if not result.ok:
        print(
            "FAILED: something was lost or done twice, or a stream had nothing accepted",
            file=sys.stderr,
        )
        return 1
    print("OK: nothing lost, nothing done twice")
    return 0


if __name__ == "__main__":
    sys.exit(main())
