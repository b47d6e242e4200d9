"""POSTing to a checked target at the address the check approved (no second DNS lookup).

The request goes to the approved IP address, with the URL's own name in the `Host` header
and as the TLS server name (SNI and certificate verification), so the receiver sees an
ordinary request to its name. After connecting, the peer's address is compared with the
approved one and anything else is refused before a byte of the body is read. Each delivery
uses a connection of its own, without proxies from the environment: a pooled connection
opened for one name must not carry a request for another name on the same address.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping
from typing import Any

import certifi
import httpx

from server.outbound_webhooks.targets import IPAddress, Target
from server.providers.errors import ProviderRejected

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def tls_context() -> ssl.SSLContext:
    """Verifies certificates against the public CAs (built once; loading them is slow)."""
    return ssl.create_default_context(cafile=certifi.where())


def _peer(response: httpx.Response) -> IPAddress | None:
    stream: Any = response.extensions.get("network_stream")
    address = stream.get_extra_info("server_addr") if stream is not None else None
    if not address:
        return None
    return ipaddress.ip_address(str(address[0]).partition("%")[0])


def _same(a: IPAddress, b: IPAddress) -> bool:
    # A dual-stack socket may report an IPv4 peer as ::ffff:a.b.c.d.
    def plain(x: IPAddress) -> IPAddress:
        if isinstance(x, ipaddress.IPv6Address) and x.ipv4_mapped is not None:
            return x.ipv4_mapped
        return x

    return plain(a) == plain(b)


async def post_pinned(
    target: Target,
    *,
    content: bytes,
    headers: Mapping[str, str],
    tls: ssl.SSLContext,
    provider: str,
) -> httpx.Response:
    """POSTs `content` to `target` at its first approved address; returns the read response.

    Raises:
        ProviderRejected: (final) the connection reached another address than the approved.
        httpx errors: as any call (the caller translates them).
    """
    address = target.addresses[0]
    url = target.url.copy_with(host=str(address))
    sent = {**headers, "host": target.url.netloc.decode("ascii")}
    extensions = {"sni_hostname": target.url.host} if target.url.scheme == "https" else {}
    transport = httpx.AsyncHTTPTransport(verify=tls, retries=0)
    async with (
        httpx.AsyncClient(transport=transport, trust_env=False, timeout=TIMEOUT) as client,
        client.stream("POST", url, content=content, headers=sent, extensions=extensions) as reply,
    ):
        peer = _peer(reply)
        if peer is None or not _same(peer, address):
            raise ProviderRejected(
                f"connected to {peer}, not the checked address {address}",
                provider=provider,
                retryable=False,
            )
        await reply.aread()
    return reply
