"""Keeps every log record the suite's processes-in-this-process emit, for the secrecy scan
(test_secrecy_scan.py), which pytest runs last: its folder sorts after every other.

The handler is installed while pytest collects, so it sees every test that runs after it.
"""

from __future__ import annotations

import logging

MAX_LINES = 200_000
LOG_LINES: list[str] = []


class _Keep(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if len(LOG_LINES) >= MAX_LINES:
            return
        try:
            line = record.getMessage()
        except Exception:  # a bad format string is not ours to judge here
            line = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            line += f" | {record.exc_info[1]!r}"
        LOG_LINES.append(f"{record.name}: {line}")


logging.getLogger().addHandler(_Keep(level=logging.DEBUG))
