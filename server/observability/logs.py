"""Log lines: one JSON object per line in production, readable text in development.

Every line carries the current call's request id, tenant and RPC or job operation
(context.py); `extra={"outcome": ..., "duration_ms": ...}` adds those fields. Secrets are
masked by the redaction filter before any formatter sees the message.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from server.observability.context import current_call
from server.security.redaction import RedactingFilter

# Attributes a LogRecord has on its own; anything else came from `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_EXTRA_FIELDS = ("outcome", "duration_ms", "code", "route", "status", "attempt")


class ContextFilter(logging.Filter):
    """Copies the current call's facts onto the record (text and JSON alike)."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = current_call()
        # A value the line brought itself (`extra=`) wins over the call's.
        if not getattr(record, "request_id", ""):
            record.request_id = info.request_id if info else ""
        record.tenant = info.tenant if info else ""
        record.rpc = (info.rpc or info.operation) if info else ""
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._prefix = ""

    def _ts(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once per second, not per line
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._ts(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "tenant", "rpc"):
            value = getattr(record, key, "")
            if value:
                line[key] = value
        for key in _EXTRA_FIELDS:
            if key in record.__dict__:
                line[key] = record.__dict__[key]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        facts = [
            f"{key}={getattr(record, key)}"
            for key in ("request_id", "tenant", "rpc")
            if getattr(record, key, "")
        ]
        facts += [f"{k}={record.__dict__[k]}" for k in _EXTRA_FIELDS if k in record.__dict__]
        return f"{text} [{' '.join(facts)}]" if facts else text


# Loggers with one line per call or job attempt; OK ones are DEBUG unless asked for.
ACCESS_LOGGERS = ("conexoes.access", "conexoes.jobs")


def install(level: str = "INFO", fmt: str = "json", access_log: str = "errors") -> None:
    """Configures root logging: the chosen format, call context and redaction on every handler.

    access_log: `all` logs every RPC and job attempt; `errors` (default) only failed or slow
    ones (a line per call would cost more than the rest of the instrumentation).
    """
    logging.basicConfig(level=level)
    if access_log == "all":
        for name in ACCESS_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
