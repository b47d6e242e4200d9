"""Loopback ports for servers a test starts in another process.

A port found by binding to 0 comes from the kernel's ephemeral range, from which it also picks
the local port of every outgoing connection: between the test closing its probe socket and the
child binding, a busy process can take it. Ports below that range are never handed out that way.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000


def _ephemeral_floor() -> int:
    try:
        return int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_loopback_port() -> int:
    """A port on 127.0.0.1, free now, outside the ephemeral range."""
    floor = _ephemeral_floor()
    for _ in range(200):
        port = random.randrange(_LOWEST, max(_LOWEST + 1, floor))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")
