"""Keeps every log line the suite's in-process server, worker and sidecar write, for the
secrecy scan (test_secrecy_scan.py), which pytest runs last: its folder sorts after every other.

The handler is installed while pytest collects, so it sees every test that runs after it. It
carries the redaction filter the service puts on every handler (server/security/redaction.py):
the scan checks the lines as they would be written.
"""

from __future__ import annotations

import logging

from server.security.redaction import RedactingFilter

MAX_LINES = 200_000
LOG_LINES: list[str] = []


class _Keep(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if len(LOG_LINES) >= MAX_LINES:
            return
        try:
            LOG_LINES.append(self.format(record))
        except Exception:  # a bad format string is not ours to judge here
            LOG_LINES.append(f"{record.name}: {record.msg}")


_handler = _Keep(level=logging.DEBUG)
_handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
_handler.addFilter(RedactingFilter())
logging.getLogger().addHandler(_handler)
