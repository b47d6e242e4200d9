"""Where outbound webhooks may point: https URLs on public addresses.

A tenant must not be able to make this service call its own private network (SSRF): every
address the host resolves to must be globally routable, checked when the endpoint is saved
and again before each delivery (DNS may change). Loopback and private targets are allowed
only when the deployment says so for development (CONEXOES_WEBHOOK_ALLOW_PRIVATE_TARGETS).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx

from server.errors import FieldViolation

MAX_URL = 2048


async def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return [literal]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


async def target_problems(
    url: str, *, allow_private: bool, name: str = "url"
) -> list[FieldViolation]:
    """Everything wrong with `url` as a webhook target; empty when it may be called."""
    if not url or len(url) > MAX_URL:
        return [FieldViolation(name, f"required, at most {MAX_URL} characters")]
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return [FieldViolation(name, "not a URL")]
    schemes = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in schemes:
        return [FieldViolation(name, "must be an https URL")]
    if not parsed.host or parsed.userinfo:
        return [FieldViolation(name, "needs a host and no user:password")]
    try:
        addresses = await _addresses(parsed.host, parsed.port or 443)
    except OSError:
        return [FieldViolation(name, f"cannot resolve {parsed.host}")]
    if allow_private:
        return []
    for address in addresses:
        if not address.is_global or address.is_multicast:
            return [FieldViolation(name, "resolves to a private, loopback or reserved address")]
    return []
