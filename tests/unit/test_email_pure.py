"""E-mail pieces without a server: nameserver specs and MX mapping, the pixel token and its
insertion, prefetchers, and the SMTP client's refusals and implicit TLS against aiosmtpd."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from server.email import detection, mime, tracking
from server.providers.smtp import (
    SmtpClient,
    SmtpHostBlocked,
    SmtpOptions,
    SmtpServer,
    SmtpTlsError,
)
from server.security.cipher import Keyring
from tests.support.mail_servers import SMTP_PASSWORD, SMTP_USER, make_certificates, smtp_server


@pytest.mark.parametrize(
    ("spec", "address", "port"),
    [("10.0.0.2", "10.0.0.2", 53), ("127.0.0.1:5353", "127.0.0.1", 5353),
     ("::1", "::1", 53), ("[::1]:5300", "::1", 5300)],
)  # fmt: skip
def test_nameserver_specs(spec: str, address: str, port: int) -> None:
    server = detection._nameserver(spec)
    assert (server.address, server.port) == (address, port)


def test_a_nameserver_must_be_an_address() -> None:
    with pytest.raises(ValueError):
        detection._nameserver("dns.example.com")


def test_mx_hosts_map_to_their_provider() -> None:
    assert detection.preset_for_mx(["ASPMX.L.GOOGLE.COM."]).provider == "Google Workspace"  # type: ignore[union-attr]
    assert detection.preset_for_mx(["mx.zoho.eu"]).host == "smtppro.zoho.eu"  # type: ignore[union-attr]
    assert detection.preset_for_mx(["mail.example.com", "notgoogle.com"]) is None
    assert detection.preset_for_host("SMTP.GMAIL.COM").help_url.endswith("185833")  # type: ignore[union-attr]


def test_pixel_goes_before_the_body_end_and_escapes_the_url() -> None:
    html = mime.with_pixel("<html><body><p>Oi</p></BODY></html>", "https://x/a?b=1&c=2")
    assert html.index("<img") < html.index("</BODY>")
    assert 'src="https://x/a?b=1&amp;c=2"' in html
    assert mime.with_pixel("<p>Oi</p>", "u").endswith('style="display:none">')
    assert mime.tracking_html("a < b\n") == '<div style="white-space:pre-wrap">a &lt; b\n</div>'


def test_pixel_token_is_sealed_per_message() -> None:
    keyring = Keyring([("k1", b"k" * 32)])
    tenant, email = uuid.uuid4(), uuid.uuid4()
    token = tracking.pixel_token(keyring, tenant, email)
    assert tracking.open_token(keyring, token) == (tenant, email)
    assert str(email) not in base64.urlsafe_b64decode(token + "==").decode()
    assert tracking.open_token(keyring, token[:-2] + "xx") is None
    assert tracking.open_token(Keyring([("k2", b"z" * 32)]), token) is None
    assert tracking.open_token(keyring, "not a token") is None


@pytest.mark.parametrize(
    ("agent", "prefetch"),
    [
        ("Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/131 Safari/537.36", False),
        ("Mozilla/5.0 (via ggpht.com GoogleImageProxy)", False),
        ("Barracuda Sentinel (EE)", True),
        ("Mozilla/5.0 (compatible; Bingbot/2.0)", True),
        ("python-httpx/0.28", True),
    ],
)
def test_prefetchers(agent: str, prefetch: bool) -> None:
    assert tracking.is_prefetcher(agent) is prefetch


async def test_private_hosts_are_refused_unless_allowed() -> None:
    client = SmtpClient(SmtpOptions(timeout_s=1))
    with pytest.raises(SmtpHostBlocked):
        await client.check(SmtpServer("localhost", 587, SMTP_USER, SMTP_PASSWORD))
    with pytest.raises(SmtpTlsError):
        await client.check(SmtpServer("localhost", 587, SMTP_USER, SMTP_PASSWORD, tls=False))


async def test_implicit_tls_submission(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    options = SmtpOptions(allow_private_hosts=True, timeout_s=2, ca_file=str(certs.ca_file))
    with smtp_server(certs.trusted, implicit=True) as server:
        target = SmtpServer(server.host, server.port, SMTP_USER, SMTP_PASSWORD, implicit=True)
        refused = await SmtpClient(options).send(
            target, SMTP_USER, ["a@exemplo.com.br"], b"Subject: tls\r\n\r\nok\r\n"
        )
        assert refused == {}
        assert server.handler.received[-1].data == b"Subject: tls\r\n\r\nok\r\n"
    with smtp_server(certs.untrusted, implicit=True) as rogue:
        target = SmtpServer(rogue.host, rogue.port, SMTP_USER, SMTP_PASSWORD, implicit=True)
        with pytest.raises(SmtpTlsError):
            await SmtpClient(options).check(target)
        assert not rogue.handler.logins
