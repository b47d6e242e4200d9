"""Manual SMTP (spec 6.3): detect the settings, test them for real, save only after a test
that passed (password encrypted, `smtp_auto_detected` recorded)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from renove.conexoes.v1 import email_service_pb2 as pb

from db.models import EmailConnection
from server.audit import record_audit
from server.auth.caller import Caller
from server.email import detection, gmail
from server.email.connection import (
    CONNECTION_TYPES,
    SMTP,
    password_context,
    row_of,
)
from server.email.mime import check_address, connection_test_message
from server.email.views import connection_status
from server.errors import FieldViolation, InvalidArgument
from server.idempotency import answer_in
from server.protoconv import timestamp
from server.providers.smtp import SmtpClient, SmtpError, SmtpServer
from server.resilience.alerts import connection_recovered

if TYPE_CHECKING:
    from server.bootstrap import Deps

DEFAULT_PORT = 587
_FAILURES = {
    "dns": pb.SMTP_TEST_FAILURE_DNS,
    "connection": pb.SMTP_TEST_FAILURE_CONNECTION,
    "blocked": pb.SMTP_TEST_FAILURE_BLOCKED,
    "timeout": pb.SMTP_TEST_FAILURE_TIMEOUT,
    "tls": pb.SMTP_TEST_FAILURE_TLS,
    "auth": pb.SMTP_TEST_FAILURE_AUTH,
    "send": pb.SMTP_TEST_FAILURE_SEND,
}
_SOURCES = {
    "known_provider": pb.SMTP_DETECTION_SOURCE_KNOWN_PROVIDER,
    "mx_record": pb.SMTP_DETECTION_SOURCE_MX_RECORD,
    "none": pb.SMTP_DETECTION_SOURCE_NONE,
}


@dataclass(frozen=True)
class Candidate:
    """What will be tested (and saved): the request's values over the detected ones."""

    server: SmtpServer
    auto_detected: bool
    preset: detection.SmtpPreset | None


async def detect(
    deps: Deps, request: pb.DetectSmtpSettingsRequest
) -> pb.DetectSmtpSettingsResponse:
    email = check_address(request.email, "email")
    found = await detection.detect(email, deps.settings.dns_nameservers)
    response = pb.DetectSmtpSettingsResponse(detected=found.detected, source=_SOURCES[found.source])
    if found.preset is not None:
        preset = found.preset
        response.provider = preset.provider
        response.smtp_host = preset.host
        response.smtp_port = preset.port
        response.smtp_tls = preset.tls
        response.requires_app_password = preset.requires_app_password
        response.help_url = preset.help_url
    return response


def _check_port(port: int) -> None:
    if port and not 0 < port < 65536:
        raise InvalidArgument.field("smtp_port", "between 1 and 65535")


async def _candidate(
    deps: Deps,
    *,
    email: str,
    password: str,
    host: str,
    port: int,
    tls: bool | None,
    user: str,
) -> Candidate:
    _check_port(port)
    if tls is False:
        raise InvalidArgument.field("smtp_tls", "the password is only sent over TLS")
    host = host.strip().lower()
    if host and (len(host) > 255 or any(c.isspace() for c in host) or "/" in host):
        raise InvalidArgument.field("smtp_host", "a host name such as smtp.example.com")
    preset: detection.SmtpPreset | None = None
    auto = False
    if not host:
        found = await detection.detect(email, deps.settings.dns_nameservers)
        if found.preset is None:
            raise InvalidArgument(
                "the domain was not recognised: give smtp_host and smtp_port",
                [FieldViolation("smtp_host", "required: the domain's SMTP server is unknown")],
            )
        preset, auto = found.preset, True
        host = preset.host
    else:
        preset = detection.preset_for_host(host)
    chosen_port = port or (preset.port if preset and auto else DEFAULT_PORT)
    return Candidate(
        SmtpServer(host=host, port=chosen_port, username=user.strip() or email, password=password),
        auto,
        preset,
    )


async def test(
    deps: Deps, smtp: SmtpClient, caller: Caller, request: pb.TestSmtpConnectionRequest
) -> pb.TestSmtpConnectionResponse:
    email = check_address(request.email, "email")
    password = request.senha
    if not password:
        password = await _stored_password(deps, caller, email)
    candidate = await _candidate(
        deps,
        email=email,
        password=password,
        host=request.smtp_host,
        port=request.smtp_port,
        tls=request.smtp_tls if request.HasField("smtp_tls") else None,
        user=request.smtp_user,
    )
    server = candidate.server
    preset = candidate.preset or detection.help_preset(server.host, email)
    response = pb.TestSmtpConnectionResponse(
        smtp_host=server.host,
        smtp_port=server.port,
        smtp_tls=server.tls,
        smtp_auto_detected=candidate.auto_detected,
        requires_app_password=bool(preset and preset.requires_app_password),
        help_url=preset.help_url if preset else "",
    )
    started = time.monotonic()
    try:
        if request.enviar_email_teste:
            await smtp.send(
                server, email, [email], connection_test_message(email, deps.clock.now())
            )
        else:
            await smtp.check(server)
    except SmtpError as exc:
        response.erro = _FAILURES.get(exc.step, pb.SMTP_TEST_FAILURE_CONNECTION)
        response.mensagem = exc.reading
        if exc.step == "auth" and preset and preset.help_url:
            response.mensagem += f" Veja como criar uma: {preset.help_url}"
    else:
        response.sucesso = True
        response.mensagem = "Conexao SMTP funcionando."
        if request.enviar_email_teste:
            response.mensagem += f" Um e-mail de teste foi enviado para {email}."
    response.latency_ms = int((time.monotonic() - started) * 1000)
    return response


async def _stored_password(deps: Deps, caller: Caller, email: str) -> str:
    async with deps.db.unit_of_work(caller) as tx:
        row = await row_of(tx, caller.require_user())
    if row is None or row.tipo != SMTP or row.email != email or not row.smtp_pass_encrypted:
        raise InvalidArgument.field("senha", "required (no saved password for this address)")
    return deps.keyring.decrypt(row.smtp_pass_encrypted, password_context(row.organizacao_id))


async def save(
    deps: Deps, smtp: SmtpClient, caller: Caller, request: pb.SaveSmtpConfigRequest
) -> pb.SaveSmtpConfigResponse:
    tenant, user = caller.require_tenant(), caller.require_user()
    email = check_address(request.email, "email")
    if not request.senha:
        raise InvalidArgument.field("senha", "required")
    if len(request.nome_remetente) > 255 or "\n" in request.nome_remetente:
        raise InvalidArgument.field("nome_remetente", "one line, at most 255 characters")
    candidate = await _candidate(
        deps,
        email=email,
        password=request.senha,
        host=request.smtp_host,
        port=request.smtp_port,
        tls=request.smtp_tls if request.HasField("smtp_tls") else None,
        user=request.smtp_user,
    )
    server = candidate.server
    try:
        await smtp.check(server)
    except SmtpError as exc:
        preset = candidate.preset or detection.help_preset(server.host, email)
        if preset and preset.help_url:
            exc.metadata["help_url"] = preset.help_url
        raise
    now = deps.clock.now()
    async with deps.db.unit_of_work(caller) as tx:
        row = await row_of(tx, user, live=False, lock=True)
        if row is None:
            row = EmailConnection(organizacao_id=tenant, usuario_id=user, tipo=SMTP, email=email)
            tx.add(row)
        replaced_grant = gmail.stored_grant(deps, row)
        row.tipo = SMTP
        row.email = email
        row.nome_remetente = request.nome_remetente.strip() or None
        row.smtp_host, row.smtp_port = server.host, server.port
        row.smtp_user, row.smtp_tls = server.username, True
        row.smtp_pass_encrypted = deps.keyring.encrypt(request.senha, password_context(tenant))
        row.smtp_auto_detected = candidate.auto_detected
        # One connection per user: SMTP replaces a Gmail authorization.
        row.google_user_id = row.access_token_encrypted = row.refresh_token_encrypted = None
        row.token_expires_at = None
        row.status, row.ultimo_erro, row.deletado_em, row.conectado_em = "active", None, None, now
        await tx.flush()
        await connection_recovered(
            tx,
            model=EmailConnection,
            connection_id=row.id,
            tenant_id=tenant,
            owner_id=user,
            connection_type=CONNECTION_TYPES[SMTP],
            at=now,
        )
        await record_audit(
            tx,
            caller,
            "email.smtp_saved",
            entity_type="conexoes_email",
            entity_id=row.id,
            details={"smtp_host": server.host, "smtp_port": server.port},
        )
        response = pb.SaveSmtpConfigResponse(
            id=str(row.id),
            tipo=pb.EMAIL_CONNECTION_KIND_SMTP_MANUAL,
            email=email,
            smtp_host=server.host,
            smtp_port=server.port,
            smtp_auto_detected=candidate.auto_detected,
            status=connection_status("active"),
            message="Conexao configurada com sucesso.",
            smtp_tls=True,
            nome_remetente=row.nome_remetente or "",
            conectado_em=timestamp(now),
        )
        await answer_in(tx, response)
    if replaced_grant:
        # After the commit: the Gmail authorization this replaced is revoked at Google.
        await gmail.revoke(deps, replaced_grant)
    return response
