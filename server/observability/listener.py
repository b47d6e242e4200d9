"""The metrics listener of the server and worker processes: `GET /metrics` on its own port.

prometheus-client serves it from a thread of its own, off the event loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

_log = logging.getLogger(__name__)


@dataclass
class MetricsListener:
    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_metrics_listener(address: str) -> MetricsListener:
    """Serves the process's metrics on `host:port` (port 0: any free port)."""
    host, _, port = address.rpartition(":")
    server, thread = start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0")
    listener = MetricsListener(server, thread)
    _log.info("metrics on http://%s:%d/metrics", host or "0.0.0.0", listener.port)
    return listener
