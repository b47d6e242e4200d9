"""SMTP submission (aiosmtplib): a checked connection, STARTTLS or implicit TLS, AUTH, send.

RFC 6409 submission on 587 upgrades with STARTTLS before anything else; 465 speaks TLS from
the first byte (RFC 8314). AUTH is never sent over a connection whose STARTTLS failed, and
the password never travels without TLS. The host is resolved here and the socket opened to
the address we checked, so a name cannot point us at a loopback or private address unless
`allow_private_hosts` (CONEXOES_SMTP_ALLOW_PRIVATE_HOSTS) says so.

Failures become `SmtpError`s that say which step failed (`step`), whether another attempt
may help (reply classes: 4xx transient, 5xx permanent) and a readable Portuguese `reading`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiosmtplib

from server.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNetworkError,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
)

PROVIDER = "smtp"
IMPLICIT_TLS_PORT = 465


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str
    password: str
    tls: bool = True
    # TLS from the first byte; implied by port 465 (a test server listens elsewhere).
    implicit: bool = False

    @property
    def implicit_tls(self) -> bool:
        return self.implicit or self.port == IMPLICIT_TLS_PORT


@dataclass(frozen=True)
class SmtpOptions:
    allow_private_hosts: bool = False
    timeout_s: float = 15.0
    ca_file: str | None = None
    local_hostname: str = "renove-conexoes"


class SmtpError(ProviderError):
    """An SMTP step failed. `step`: dns, connection, timeout, tls, auth, send, blocked."""

    step = "connection"

    def __init__(self, reading: str, *, smtp_code: int | None = None, **kwargs: object) -> None:
        super().__init__(reading, provider=PROVIDER, status_code=smtp_code, **kwargs)  # type: ignore[arg-type]
        self.reading = reading
        self.smtp_code = smtp_code


class SmtpDnsError(SmtpError, ProviderNetworkError):
    step = "dns"
    reason = "SMTP_HOST_NOT_FOUND"
    retryable = False


class SmtpConnectionRefused(SmtpError, ProviderNetworkError):
    step = "connection"
    reason = "SMTP_UNREACHABLE"


class SmtpTimeout(SmtpError, ProviderTimeout):
    step = "timeout"
    reason = "SMTP_TIMEOUT"


class SmtpTlsError(SmtpError, ProviderRejected):
    step = "tls"
    reason = "SMTP_TLS_FAILED"


class SmtpAuthFailed(SmtpError, ProviderAuthError):
    step = "auth"
    reason = "SMTP_AUTH_FAILED"


class SmtpTransient(SmtpError, ProviderServerError):
    """4xx: the server asks us to come back later."""

    step = "send"
    reason = "SMTP_TEMPORARY_FAILURE"


class SmtpRejected(SmtpError, ProviderRejected):
    """5xx (other than AUTH): permanent for this message."""

    step = "send"
    reason = "SMTP_REJECTED"


class SmtpUnsupported(SmtpError, ProviderRejected):
    """The server does not speak what submission needs (AUTH, a usable greeting)."""

    step = "connection"
    reason = "SMTP_NOT_SUPPORTED"


class SmtpHostBlocked(SmtpError, ProviderRejected):
    step = "blocked"
    reason = "SMTP_HOST_NOT_ALLOWED"


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_global and not ip.is_multicast


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_failure(server: SmtpServer, cause: ssl.SSLError) -> SmtpTlsError:
    if isinstance(cause, ssl.SSLCertVerificationError):
        detail = cause.verify_message or "certificado invalido"
        return SmtpTlsError(
            f"O certificado TLS de {server.host} nao e confiavel ({detail}). "
            "Confira o nome do servidor."
        )
    return SmtpTlsError(f"A negociacao TLS com {server.host} falhou ({cause.reason or cause}).")


def _reply_error(exc: aiosmtplib.SMTPResponseException, server: SmtpServer) -> SmtpError:
    code, message = exc.code, (exc.message or "").strip()[:200]
    if code in (534, 535) or (isinstance(exc, aiosmtplib.SMTPAuthenticationError) and code >= 500):
        return SmtpAuthFailed(
            f"O servidor recusou o login ({code} {message}). Confira o e-mail e a senha; "
            "muitos provedores exigem uma senha de app.",
            smtp_code=code,
        )
    if 400 <= code < 500:
        return SmtpTransient(
            f"O servidor pediu para tentar mais tarde ({code} {message}).", smtp_code=code
        )
    return SmtpRejected(f"O servidor recusou a mensagem ({code} {message}).", smtp_code=code)


def translate(exc: BaseException, server: SmtpServer) -> SmtpError:
    """aiosmtplib and socket failures, most specific evidence first."""
    if isinstance(exc, SmtpError):
        return exc
    cause = _ssl_cause(exc)
    if cause is not None:
        return _tls_failure(server, cause)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return _reply_error(exc.recipients[0], server)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _reply_error(exc, server)
    if isinstance(exc, TimeoutError):
        return SmtpTimeout(f"{server.host}:{server.port} nao respondeu a tempo.")
    if isinstance(exc, aiosmtplib.SMTPException) and not isinstance(exc, ConnectionError):
        return SmtpUnsupported(
            f"{server.host}:{server.port} nao aceita envio autenticado ({exc}). "
            "Confira o servidor e a porta."
        )
    if isinstance(exc, ConnectionRefusedError):
        return SmtpConnectionRefused(
            f"{server.host} recusou a conexao na porta {server.port}. Confira a porta."
        )
    return SmtpConnectionRefused(
        f"A conexao com {server.host}:{server.port} falhou ({type(exc).__name__}: {exc})."
    )


class SmtpClient:
    """Long-lived (one per process and use): the TLS context, whose CA store costs ~20 ms of
    CPU to load, is built once on first use and shared by every connection."""

    def __init__(self, options: SmtpOptions) -> None:
        self._options = options
        self._context: ssl.SSLContext | None = None
        self._context_lock = asyncio.Lock()

    async def _tls(self) -> ssl.SSLContext:
        async with self._context_lock:
            if self._context is None:
                self._context = await asyncio.to_thread(_tls_context, self._options.ca_file)
            return self._context

    async def _addresses(self, server: SmtpServer) -> list[tuple[int, tuple[str, int]]]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._options.timeout_s):
                infos = await loop.getaddrinfo(
                    server.host, server.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
        except TimeoutError as exc:
            raise SmtpTimeout(f"O nome {server.host} nao foi resolvido a tempo (DNS).") from exc
        except OSError as exc:
            raise SmtpDnsError(
                f"O servidor {server.host} nao foi encontrado (DNS). Confira o nome do servidor."
            ) from exc
        found = [(int(family), (str(addr[0]), int(addr[1]))) for family, _, _, _, addr in infos]
        if not self._options.allow_private_hosts:
            found = [(f, a) for f, a in found if _is_public(a[0])]
            if not found:
                raise SmtpHostBlocked(
                    f"{server.host} aponta para um endereco interno; use o servidor SMTP publico "
                    "do seu provedor."
                )
        return found

    async def _connect(self, server: SmtpServer) -> socket.socket:
        loop = asyncio.get_running_loop()
        last: BaseException | None = None
        for family, address in await self._addresses(server):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(self._options.timeout_s):
                    await loop.sock_connect(sock, address)
                return sock
            except (OSError, TimeoutError) as exc:
                sock.close()
                last = exc
        assert last is not None
        raise translate(last, server) from last

    @asynccontextmanager
    async def session(self, server: SmtpServer) -> AsyncIterator[aiosmtplib.SMTP]:
        """Connected, encrypted and logged in; closed on exit."""
        if not server.tls:
            raise SmtpTlsError("A senha so e enviada por conexao TLS (STARTTLS ou porta 465).")
        context = await self._tls()
        sock = await self._connect(server)
        client = aiosmtplib.SMTP(
            hostname=server.host,
            sock=sock,
            use_tls=server.implicit_tls,
            start_tls=False,
            tls_context=context,
            timeout=self._options.timeout_s,
            local_hostname=self._options.local_hostname,
        )
        try:
            try:
                await client.connect()
                if not server.implicit_tls:
                    await client.ehlo()
                    if not client.supports_extension("starttls"):
                        raise SmtpTlsError(
                            f"{server.host} nao oferece STARTTLS na porta {server.port}; "
                            "a senha nao sera enviada sem TLS."
                        )
                    await client.starttls()
                await client.login(server.username, server.password)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise translate(exc, server) from exc
            yield client
        finally:
            sock_open = client.is_connected
            if sock_open:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()
            else:
                sock.close()

    async def check(self, server: SmtpServer) -> None:
        """Connect, TLS, AUTH; sends nothing."""
        async with self.session(server):
            pass

    async def send(
        self, server: SmtpServer, sender: str, recipients: Sequence[str], message: bytes
    ) -> dict[str, str]:
        """Submits one message; returns the recipients the server refused (address -> reply)."""
        async with self.session(server) as client:
            try:
                refused, _ = await client.sendmail(sender, list(recipients), message)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise translate(exc, server) from exc
        return {addr: f"{r.code} {r.message}" for addr, r in refused.items()}
