"""Real mail-side servers for the e-mail tests: aiosmtpd with STARTTLS (a test CA made here
with `cryptography`) and AUTH, a TCP listener that never greets (timeouts), and a small UDP
DNS server answering MX queries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_loopback_port

SMTP_USER = "vendedor@empresa.com.br"
SMTP_PASSWORD = "senha-de-app-correta"


def free_port() -> int:
    return free_loopback_port()


@dataclass(frozen=True)
class MailCertificates:
    ca_file: Path  # the CA the server's SMTP client is told to trust
    trusted: ssl.SSLContext  # a server context whose certificate that CA signed
    untrusted: ssl.SSLContext  # a self-signed certificate nobody trusts


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _server_context(folder: Path, name: str, cert: x509.Certificate, key: Any) -> ssl.SSLContext:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


def make_certificates(folder: Path) -> MailCertificates:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Renove Test CA", ca_key, None, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert("localhost", leaf_key, ("Renove Test CA", ca_key), ca=False)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = _cert("localhost", rogue_key, None, ca=False)
    ca_file = folder / "test-ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return MailCertificates(
        ca_file=ca_file,
        trusted=_server_context(folder, "trusted", leaf, leaf_key),
        untrusted=_server_context(folder, "rogue", rogue, rogue_key),
    )


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # the DATA bytes exactly as they arrived


@dataclass
class MailHandler:
    """Keeps every accepted message; `replies` scripts DATA answers ("451 ...") in order."""

    received: list[Received] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    auth_attempts: list[str] = field(default_factory=list)  # every AUTH, right or wrong
    password: str = SMTP_PASSWORD  # change it to make the mailbox refuse the saved one

    async def handle_DATA(self, server: SMTPProtocol, session: Session, envelope: Envelope) -> str:
        if self.replies:
            return self.replies.pop(0)
        raw = envelope.original_content or b""
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), raw))
        return "250 2.0.0 OK queued"


def _authenticator(handler: MailHandler) -> Any:
    def check(
        server: SMTPProtocol, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        handler.auth_attempts.append(login)
        ok = login == SMTP_USER and password == handler.password
        if ok:
            handler.logins.append(login)
        return AuthResult(success=ok, handled=False)

    return check


@dataclass
class SmtpServerHandle:
    host: str
    port: int
    handler: MailHandler


@contextmanager
def smtp_server(
    tls: ssl.SSLContext | None, *, implicit: bool = False
) -> Iterator[SmtpServerHandle]:
    """aiosmtpd on 127.0.0.1: STARTTLS required before AUTH (or TLS from the first byte).
    Without `tls` it plays a downgraded server: no STARTTLS offered, AUTH in the clear."""
    handler = MailHandler()
    port = free_port()
    tls_kwargs: dict[str, Any] = {}
    if tls is not None:
        tls_kwargs = (
            {"ssl_context": tls} if implicit else {"tls_context": tls, "require_starttls": True}
        )
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticator(handler),
        # An implicit-TLS session is encrypted from the start; aiosmtpd only knows STARTTLS.
        auth_require_tls=not implicit and tls is not None,
        auth_exclude_mechanism=["CRAM-MD5"],
        decode_data=False,
        ready_timeout=10,
        **tls_kwargs,
    )
    controller.start()
    try:
        yield SmtpServerHandle("localhost", port, handler)
    finally:
        controller.stop()


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accepts TCP connections and never says a word: the SMTP greeting times out."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()


class _DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, zones: dict[str, list[tuple[int, str]]]) -> None:
        self.zones = zones
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        records = self.zones.get(name)
        if records is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.MX:
            texts = [f"{pref} {host}." for pref, host in records]
            reply.answer.append(dns.rrset.from_text(question.name, 300, "IN", "MX", *texts))
        self.transport.sendto(reply.to_wire(), addr)


@asynccontextmanager
async def dns_server(zones: dict[str, list[tuple[int, str]]]) -> AsyncIterator[str]:
    """A UDP DNS server on 127.0.0.1 answering MX queries from `zones`; yields `ip:port`."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _DnsProtocol(zones), local_addr=("127.0.0.1", 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        yield f"127.0.0.1:{port}"
    finally:
        transport.close()
