"""Per-source rate limiting for the public routes: one token bucket per (client, route).

The client is the socket peer. Forwarding headers are believed only when the peer is a proxy
the deployment named (CONEXOES_TRUSTED_PROXIES): anyone can write an X-Forwarded-For header,
and a limiter keyed by it would let an attacker pick a fresh bucket per request.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from starlette.responses import PlainTextResponse, Response
from starlette.types import Scope

from webhooks_http.settings import Network, RateLimitOptions

# Re-exported: the options live with the sidecar's settings.
__all__ = ["RateLimitOptions", "TokenBucketLimiter"]


class TokenBucketLimiter:
    """Token buckets keyed by any string; bounded memory (least recently used keys dropped,
    which only ever hands a source a full bucket again).
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate_per_second must be > 0 and burst >= 1")
        self._rate = rate_per_second
        self._burst = float(burst)
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, key: str) -> float | None:
        """Takes one token. Returns None when allowed, else seconds until a token is due."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return None
        self._store(key, tokens, now)
        return (1.0 - tokens) / self._rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def too_many(seconds: float) -> Response:
    return PlainTextResponse(
        "too many requests", status_code=429, headers={"retry-after": retry_after_header(seconds)}
    )


def client_address(scope: Scope, trusted_proxies: Iterable[Network] = ()) -> tuple[str, int]:
    """(ip, port) of the client: the socket peer, or, behind a trusted proxy, the nearest
    X-Forwarded-For hop that is not itself a trusted proxy (port 0: unknown).
    """
    peer = scope.get("client") or ("", 0)
    host, port = str(peer[0]), int(peer[1])
    proxies = tuple(trusted_proxies)
    if not proxies or not _within(host, proxies):
        return host, port
    forwarded: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            forwarded += [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
    # Rightmost first: each trusted proxy appends the address it saw.
    for hop in reversed(forwarded):
        if not _within(hop, proxies):
            return (hop, 0) if _is_ip(hop) else (host, port)
    return host, port


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _within(host: str, networks: Iterable[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in networks)
