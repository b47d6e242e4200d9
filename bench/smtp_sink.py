"""The mail server of the e-mail row: aiosmtpd with STARTTLS required (a certificate from a CA
made here with `cryptography`, which the server is told to trust through
CONEXOES_SMTP_CA_FILE) and AUTH PLAIN/LOGIN, counting what it accepts. It runs in a thread of
the runner, on the load core, for ours and the baseline alike."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER = "vendedor@bench.example"
PASSWORD = "bench-app-password"


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificates(folder: Path) -> Certificates:
    """A CA and a certificate for localhost/127.0.0.1 it signed, valid for a day."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Renove Bench CA"))
        .issuer_name(_name("Renove Bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    found = Certificates(folder / "smtp-ca.pem", folder / "smtp.crt", folder / "smtp.key")
    found.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    found.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    found.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return found


@dataclass
class _Counter:
    accepted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTPProtocol, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.accepted += 1
        return "250 2.0.0 OK"


def _check(
    server: SMTPProtocol, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login.decode() == USER
        and data.password.decode() == PASSWORD
    )
    return AuthResult(success=ok, handled=False)


def sink_controller(handler: object, certs: Certificates, port: int) -> Controller:
    """An aiosmtpd server on 127.0.0.1:`port` as the service meets a real one: STARTTLS
    required (the test CA's certificate), AUTH PLAIN/LOGIN with USER and PASSWORD after it;
    `handler` takes the messages. The bench's sink and the soak's use it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert_file, certs.key_file)
    return Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=_check,
        auth_require_tls=True,
        auth_exclude_mechanism=["CRAM-MD5"],
        decode_data=False,
        ready_timeout=10,
    )


class SmtpSink:
    def __init__(self, certs: Certificates, port: int) -> None:
        self._counter = _Counter()
        self.host, self.port = "localhost", port
        self._controller = sink_controller(self._counter, certs, port)

    @property
    def accepted(self) -> int:
        with self._counter.lock:
            return self._counter.accepted

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
