"""Open server streams (SSE/NDJSON) per client address, capped.

Each open stream holds a gRPC call, a task and a connection on both sides; one address may
hold a bounded number at once. Beyond it the gateway answers 429 (RESOURCE_EXHAUSTED) with
Retry-After, and logs the refusal. The server caps streams per caller on its side as well.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from starlette.types import Receive, Scope, Send

_log = logging.getLogger(__name__)
DEFAULT_STREAMS_PER_ADDRESS = 32

ASGICallable = Callable[[Scope, Receive, Send], Awaitable[None]]


class StreamSlots:
    def __init__(self, per_address: int = DEFAULT_STREAMS_PER_ADDRESS) -> None:
        self.limit = per_address
        self._open: Counter[str] = Counter()

    def open(self, address: str) -> int:
        return self._open[address]

    def take(self, address: str, path: str) -> bool:
        """Takes a slot for `address`; False (logged) when it holds the limit already."""
        if self._open[address] >= self.limit:
            _log.warning(
                "stream refused: %s already holds %d open streams (%s)",
                address, self._open[address], path,
            )  # fmt: skip
            return False
        self._open[address] += 1
        return True

    def holding(self, address: str, response: ASGICallable) -> ASGICallable:
        """`response`, releasing the slot taken for `address` when it ends (however it ends)."""

        async def run(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await response(scope, receive, send)
            finally:
                self._open[address] -= 1
                if self._open[address] <= 0:
                    del self._open[address]

        return run
