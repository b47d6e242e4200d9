"""A DNS server on loopback answering A/AAAA queries from a table tests change at will: a
name can point at a public address, then at loopback (rebinding), or answer a script of
addresses one query at a time. Every question asked is kept."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


@dataclass
class Hosts:
    """name -> addresses; a name with several answers in `script` gives them one per A
    query, then keeps giving the last."""

    table: dict[str, list[str]] = field(default_factory=dict)
    script: dict[str, list[str]] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)  # (name, "A" | "AAAA")
    nameserver: str = ""  # `ip:port`, for CONEXOES_DNS_NAMESERVERS

    def point(self, name: str, *addresses: str) -> None:
        self.script.pop(name, None)
        self.table[name] = list(addresses)

    def answer_in_turn(self, name: str, *addresses: str) -> None:
        self.script[name] = list(addresses)

    def asked_for(self, name: str, rdtype: str = "A") -> int:
        return self.asked.count((name, rdtype))

    def lookup(self, name: str, rdtype: str) -> list[str] | None:
        if name in self.script:
            queue = self.script[name]
            current = [queue[0]]
            if rdtype == "A" and len(queue) > 1:
                queue.pop(0)
            addresses: list[str] | None = current
        else:
            addresses = self.table.get(name)
        if addresses is None:
            return None
        version = 4 if rdtype == "A" else 6
        return [a for a in addresses if ipaddress.ip_address(a).version == version]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, hosts: Hosts) -> None:
        self.hosts = hosts
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.hosts.asked.append((name, rdtype))
        found = self.hosts.lookup(name, rdtype) if rdtype in ("A", "AAAA") else None
        if found is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif found:
            reply.answer.append(dns.rrset.from_text(question.name, 0, "IN", rdtype, *found))
        self.transport.sendto(reply.to_wire(), addr)


@asynccontextmanager
async def hosts_dns(hosts: Hosts) -> AsyncIterator[Hosts]:
    """Serves `hosts` on 127.0.0.1 (UDP); sets and yields it with its `nameserver`."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Protocol(hosts), local_addr=("127.0.0.1", 0)
    )
    try:
        hosts.nameserver = f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
        yield hosts
    finally:
        transport.close()
