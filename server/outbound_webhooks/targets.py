"""Where outbound webhooks may point: https URLs on public addresses.

A tenant must not be able to make this service call its own private network (SSRF): every
address the host resolves to must be globally routable, checked when the endpoint is saved
and again before each delivery (DNS may change). The delivery then connects to an address
this check approved (server/outbound_webhooks/pinned.py), never resolving the name a second
time, so a name that answers a public address to the check and a private one to the
connection (DNS rebinding) gets nowhere. Loopback and private targets are allowed only when
the deployment says so for development (CONEXOES_WEBHOOK_ALLOW_PRIVATE_TARGETS).

Names are resolved by the system resolver, or by the servers `CONEXOES_DNS_NAMESERVERS`
names when it is set.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
import httpx

from server.errors import FieldViolation

MAX_URL = 2048
DNS_TIMEOUT_S = 5.0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A URL judged fit to call, with the addresses its host had when judged."""

    url: httpx.URL
    addresses: tuple[IPAddress, ...]


def _nameserver(spec: str) -> dns.nameserver.Do53Nameserver:
    """`ip`, `ip:port`, `[ipv6]:port` or a bare IPv6 address."""
    host, port = spec, 53
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = int(rest.lstrip(":") or 53)
    elif spec.count(":") == 1:
        host, _, raw = spec.partition(":")
        port = int(raw)
    return dns.nameserver.Do53Nameserver(str(ipaddress.ip_address(host)), port)


async def _from_nameservers(host: str, nameservers: Sequence[str]) -> list[IPAddress]:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [_nameserver(n) for n in nameservers]
    resolver.lifetime = DNS_TIMEOUT_S
    found: list[IPAddress] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = await resolver.resolve(host, rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from exc
        found += [ipaddress.ip_address(r.address) for r in answer]
    if not found:
        raise OSError(f"{host} has no address")
    return found


async def addresses_of(host: str, port: int, nameservers: Sequence[str] = ()) -> list[IPAddress]:
    """Every address `host` resolves to now (a literal address is itself).

    Raises:
        OSError: the name does not resolve.
    """
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return [literal]
    if nameservers:
        return await _from_nameservers(host, nameservers)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def is_public(address: IPAddress) -> bool:
    # An IPv4 address written as IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address it is.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def resolve_target(
    url: str, *, allow_private: bool, nameservers: Sequence[str] = (), name: str = "url"
) -> tuple[Target | None, list[FieldViolation]]:
    """The target `url` names and its checked addresses, or everything wrong with it."""
    if not url or len(url) > MAX_URL:
        return None, [FieldViolation(name, f"required, at most {MAX_URL} characters")]
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return None, [FieldViolation(name, "not a URL")]
    schemes = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in schemes:
        return None, [FieldViolation(name, "must be an https URL")]
    if not parsed.host or parsed.userinfo:
        return None, [FieldViolation(name, "needs a host and no user:password")]
    default_port = 443 if parsed.scheme == "https" else 80
    try:
        addresses = await addresses_of(parsed.host, parsed.port or default_port, nameservers)
    except (OSError, ValueError):
        return None, [FieldViolation(name, f"cannot resolve {parsed.host}")]
    if not allow_private and not all(is_public(a) for a in addresses):
        return None, [FieldViolation(name, "resolves to a private, loopback or reserved address")]
    return Target(parsed, tuple(dict.fromkeys(addresses))), []


async def target_problems(
    url: str, *, allow_private: bool, nameservers: Sequence[str] = (), name: str = "url"
) -> list[FieldViolation]:
    """Everything wrong with `url` as a webhook target; empty when it may be called."""
    _, problems = await resolve_target(
        url, allow_private=allow_private, nameservers=nameservers, name=name
    )
    return problems
