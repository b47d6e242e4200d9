"""Manual SMTP end to end: detection (the provider table and MX through a test DNS server),
the connection test and save against a real aiosmtpd (STARTTLS with a test CA, AUTH), and
each failure told apart with nothing saved."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from renove.conexoes.v1 import email_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Role
from server.email import smtp_setup
from server.email.detection import GOOGLE_HELP, KNOWN_DOMAINS
from server.providers.smtp import SmtpClient, SmtpOptions
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase, PgServer
from tests.integration.meta_leads_support import isolated_database, owner_engine_for
from tests.support.crm_core import connection_changes, replayed_changes
from tests.support.email_stack import EmailStack, email_stack
from tests.support.mail_servers import (
    SMTP_PASSWORD,
    SMTP_USER,
    free_port,
    silent_server,
    smtp_server,
)


@pytest.fixture(scope="module")
async def database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
    async with isolated_database(pg) as fresh:
        yield fresh


@pytest.fixture(scope="module")
async def owner_engine(database: MigratedDatabase) -> AsyncIterator[AsyncEngine]:
    async with owner_engine_for(database) as engine:
        yield engine


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[EmailStack]:
    async with email_stack(database.owner_url, Path(tmp_path_factory.mktemp("email"))) as s:
        yield s


def _details(exc: grpc.aio.AioRpcError) -> tuple[str, dict[str, str], list[str]]:
    status = status_pb2.Status()
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status.ParseFromString(value)  # type: ignore[arg-type]
    reason, metadata, fields = "", {}, []
    for detail in status.details:
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Unpack(bad):
            fields = [v.field for v in bad.field_violations]
    return reason, metadata, fields


async def _saved_rows(owner_engine: AsyncEngine, tenant: uuid.UUID) -> int:
    async with owner_engine.connect() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, false)"), {"t": str(tenant)}
        )
        count = await conn.scalar(
            text("SELECT count(*) FROM conexoes_email WHERE organizacao_id = :t"), {"t": tenant}
        )
        await conn.execute(text("RESET app.current_tenant"))
    return int(count or 0)


@pytest.mark.parametrize("domain", sorted(KNOWN_DOMAINS))
async def test_detect_every_domain_of_the_table(
    domain: str, stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = make_caller(await make_tenant())
    found = await stack.stub.DetectSmtpSettings(
        pb.DetectSmtpSettingsRequest(email=f"alguem@{domain}"), metadata=stack.md(caller)
    )
    preset = KNOWN_DOMAINS[domain]
    assert found.detected and found.source == pb.SMTP_DETECTION_SOURCE_KNOWN_PROVIDER
    assert (found.provider, found.smtp_host, found.smtp_port, found.smtp_tls) == (
        preset.provider,
        preset.host,
        587,
        True,
    )


async def test_detect_follows_the_spec_table_corrected_by_the_providers(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = make_caller(await make_tenant())

    async def detect(email: str) -> pb.DetectSmtpSettingsResponse:
        return await stack.stub.DetectSmtpSettings(  # type: ignore[no-any-return]
            pb.DetectSmtpSettingsRequest(email=email), metadata=stack.md(caller)
        )

    gmail = await detect("Joao.Silva@GMAIL.com")
    assert gmail.requires_app_password
    assert gmail.help_url == "https://support.google.com/accounts/answer/185833"
    outlook = await detect("joao@hotmail.com")
    # Outlook.com submits through smtp-mail.outlook.com, and password SMTP is going away.
    assert outlook.smtp_host == "smtp-mail.outlook.com" and outlook.requires_app_password
    assert outlook.help_url.startswith("https://support.microsoft.com/")


@pytest.mark.parametrize(
    ("domain", "provider", "host"),
    [
        ("cliente-workspace.com.br", "Google Workspace", "smtp.gmail.com"),
        ("cliente-m365.com.br", "Microsoft 365", "smtp.office365.com"),
        ("cliente-zoho.com.br", "Zoho Mail", "smtppro.zoho.com"),
        ("cliente-locaweb.com.br", "Locaweb", "email-ssl.com.br"),
    ],
)
async def test_detect_custom_domains_by_mx(
    domain: str,
    provider: str,
    host: str,
    stack: EmailStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
) -> None:
    caller = make_caller(await make_tenant())
    found = await stack.stub.DetectSmtpSettings(
        pb.DetectSmtpSettingsRequest(email=f"vendas@{domain}"), metadata=stack.md(caller)
    )
    assert found.detected and found.source == pb.SMTP_DETECTION_SOURCE_MX_RECORD
    assert (found.provider, found.smtp_host, found.smtp_port) == (provider, host, 587)


@pytest.mark.parametrize("domain", ["cliente-proprio.com.br", "nao-existe.com.br"])
async def test_unknown_domains_ask_for_host_and_port(
    domain: str, stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = make_caller(await make_tenant())
    found = await stack.stub.DetectSmtpSettings(
        pb.DetectSmtpSettingsRequest(email=f"vendas@{domain}"), metadata=stack.md(caller)
    )
    assert not found.detected and found.source == pb.SMTP_DETECTION_SOURCE_NONE
    assert found.smtp_host == ""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.SaveSmtpConfig(
            pb.SaveSmtpConfigRequest(email=f"vendas@{domain}", senha="x"),
            metadata=stack.md(caller),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _details(err.value)[2] == ["smtp_host"]


async def test_bad_address_is_invalid_argument(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = make_caller(await make_tenant())
    for call, request in (
        (stack.stub.DetectSmtpSettings, pb.DetectSmtpSettingsRequest(email="sem-arroba")),
        (stack.stub.TestSmtpConnection, pb.TestSmtpConnectionRequest(email="a b@x.com", senha="x")),
        (stack.stub.SaveSmtpConfig, pb.SaveSmtpConfigRequest(email="x@y", senha="x")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=stack.md(caller))  # type: ignore[operator]
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _details(err.value)[2] == ["email"]


def _settings(stack: EmailStack, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "email": SMTP_USER,
        "senha": SMTP_PASSWORD,
        "smtp_host": stack.smtp.host,
        "smtp_port": stack.smtp.port,
    }
    values.update(changes)
    return values


async def test_connection_test_passes_with_good_credentials_and_sends_nothing(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = make_caller(tenant)
    before = len(stack.smtp.handler.received)
    result = await stack.stub.TestSmtpConnection(
        pb.TestSmtpConnectionRequest(**_settings(stack)), metadata=stack.md(caller)
    )
    assert result.sucesso, result.mensagem
    assert result.erro == pb.SMTP_TEST_FAILURE_UNSPECIFIED
    assert (result.smtp_host, result.smtp_port) == ("localhost", stack.smtp.port)
    assert len(stack.smtp.handler.received) == before
    assert await _saved_rows(owner_engine, tenant.id) == 0

    asked = await stack.stub.TestSmtpConnection(
        pb.TestSmtpConnectionRequest(**_settings(stack), enviar_email_teste=True),
        metadata=stack.md(caller),
    )
    assert asked.sucesso, asked.mensagem
    assert stack.smtp.handler.received[-1].rcpt_tos == [SMTP_USER]


async def _failure(
    stack: EmailStack, caller: object, **changes: object
) -> pb.TestSmtpConnectionResponse:
    return await stack.stub.TestSmtpConnection(  # type: ignore[no-any-return]
        pb.TestSmtpConnectionRequest(**_settings(stack, **changes)),
        metadata=stack.md(caller),  # type: ignore[arg-type]
    )


async def test_each_failure_has_its_own_readable_reason(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = make_caller(await make_tenant())
    wrong_password = await _failure(stack, caller, senha="senha-errada")
    assert wrong_password.erro == pb.SMTP_TEST_FAILURE_AUTH
    assert "535" in wrong_password.mensagem and "senha de app" in wrong_password.mensagem

    refused = await _failure(stack, caller, smtp_port=free_port())
    assert refused.erro == pb.SMTP_TEST_FAILURE_CONNECTION
    assert "recusou a conexao" in refused.mensagem

    untrusted = await _failure(stack, caller, smtp_port=stack.rogue.port)
    assert untrusted.erro == pb.SMTP_TEST_FAILURE_TLS
    assert "certificado" in untrusted.mensagem and "nao e confiavel" in untrusted.mensagem
    assert not stack.rogue.handler.logins  # no AUTH after a failed STARTTLS

    unknown = await _failure(stack, caller, smtp_host="nao-existe.invalid")
    assert unknown.erro == pb.SMTP_TEST_FAILURE_DNS
    assert "nao foi encontrado (DNS)" in unknown.mensagem

    async with silent_server() as port:
        slow = await _failure(stack, caller, smtp_port=port)
    assert slow.erro == pb.SMTP_TEST_FAILURE_TIMEOUT
    assert "a tempo" in slow.mensagem

    readings = {
        wrong_password.mensagem,
        refused.mensagem,
        untrusted.mensagem,
        unknown.mensagem,
        slow.mensagem,
    }
    assert len(readings) == 5


async def test_gmail_app_password_help_on_a_refused_login(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    """The help link follows the host, else the address's domain: a Gmail address behind
    another host name (here the local test server) still gets Google's app-password link."""
    caller = make_caller(await make_tenant())
    refused = await _failure(stack, caller, email="x@gmail.com", senha="errada")
    assert refused.erro == pb.SMTP_TEST_FAILURE_AUTH
    assert refused.help_url == GOOGLE_HELP
    assert refused.requires_app_password
    assert GOOGLE_HELP in refused.mensagem

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.SaveSmtpConfig(
            pb.SaveSmtpConfigRequest(**_settings(stack, email="x@gmail.com", senha="errada")),
            metadata=stack.md(caller),
        )
    reason, metadata, _ = _details(err.value)
    assert (reason, metadata.get("help_url")) == ("SMTP_AUTH_FAILED", GOOGLE_HELP)

    unknown_domain = await _failure(stack, caller, senha="errada")
    assert unknown_domain.help_url == ""  # neither localhost nor exemplo's domain is known


async def test_a_server_offering_no_starttls_gets_no_password(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    """A downgraded server (no STARTTLS, AUTH offered in the clear) is a TLS failure, and
    the login is never attempted."""
    caller = make_caller(await make_tenant())
    with smtp_server(None) as plain:
        result = await _failure(stack, caller, smtp_port=plain.port)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.stub.SaveSmtpConfig(
                pb.SaveSmtpConfigRequest(**_settings(stack, smtp_port=plain.port)),
                metadata=stack.md(caller),
            )
    assert result.erro == pb.SMTP_TEST_FAILURE_TLS and not result.sucesso
    assert _details(err.value)[0] == "SMTP_TLS_FAILED"
    assert plain.handler.auth_attempts == [] and plain.handler.logins == []


async def test_a_host_resolving_to_an_internal_address_is_blocked(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    """With private hosts refused (production's default), localhost is BLOCKED, told apart
    from a name that does not resolve."""
    caller = make_caller(await make_tenant())
    guarded = SmtpClient(SmtpOptions(allow_private_hosts=False, timeout_s=1.0))
    result = await smtp_setup.test(
        stack.server.deps,
        guarded,
        caller,
        pb.TestSmtpConnectionRequest(**_settings(stack)),  # type: ignore[arg-type]
    )
    assert result.erro == pb.SMTP_TEST_FAILURE_BLOCKED
    assert "endereco interno" in result.mensagem


async def test_save_after_a_passing_test_stores_the_password_encrypted(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = make_caller(tenant)
    saved = await stack.stub.SaveSmtpConfig(
        pb.SaveSmtpConfigRequest(
            **_settings(stack), nome_remetente="Joao Silva", request_id=str(uuid.uuid4())
        ),
        metadata=stack.md(caller),
    )
    assert saved.status == resources_pb2.CONNECTION_STATUS_ACTIVE
    assert saved.tipo == pb.EMAIL_CONNECTION_KIND_SMTP_MANUAL
    assert (saved.smtp_host, saved.smtp_port, saved.smtp_auto_detected) == (
        "localhost",
        stack.smtp.port,
        False,
    )
    assert saved.message == "Conexao configurada com sucesso."
    async with owner_engine.connect() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, false)"), {"t": str(tenant.id)}
        )
        stored = await conn.scalar(
            text("SELECT smtp_pass_encrypted FROM conexoes_email WHERE id = :id"), {"id": saved.id}
        )
        await conn.execute(text("RESET app.current_tenant"))
    assert stored and stored.startswith("v1:") and SMTP_PASSWORD not in stored

    current = await stack.stub.GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    assert current.connection.email == SMTP_USER
    assert current.connection.smtp_password_set
    assert current.connection.nome_remetente == "Joao Silva"
    assert SMTP_PASSWORD not in str(current)

    # Another member of the tenant sees no connection of their own.
    other = make_caller(tenant, role=Role.ADMIN)
    theirs = await stack.stub.GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(other)
    )
    assert theirs.connection.status == resources_pb2.CONNECTION_STATUS_DISCONNECTED

    gone = await stack.stub.DisconnectEmail(
        pb.DisconnectEmailRequest(request_id=str(uuid.uuid4())), metadata=stack.md(caller)
    )
    assert gone.connection.status == resources_pb2.CONNECTION_STATUS_DISCONNECTED
    after = await stack.stub.GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    assert after.connection.status == resources_pb2.CONNECTION_STATUS_DISCONNECTED
    # The CRM core, resuming the change feed, learns both changes.
    smtp = resources_pb2.CONNECTION_TYPE_EMAIL_SMTP_MANUAL
    changes = connection_changes(await replayed_changes(stack.server, tenant.id))
    assert changes == [(smtp, "active"), (smtp, "disconnected")]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"senha": "senha-errada"}, "SMTP_AUTH_FAILED"),
        ({"smtp_port": "rogue"}, "SMTP_TLS_FAILED"),
        ({"smtp_port": "closed"}, "SMTP_UNREACHABLE"),
        ({"smtp_host": "nao-existe.invalid"}, "SMTP_HOST_NOT_FOUND"),
    ],
    ids=["bad-credentials", "untrusted-certificate", "wrong-port", "unknown-host"],
)
async def test_save_saves_nothing_when_the_test_fails(
    change: dict[str, object],
    reason: str,
    stack: EmailStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant()
    caller = make_caller(tenant)
    ports = {"rogue": stack.rogue.port, "closed": free_port()}
    values = {k: ports.get(v, v) if isinstance(v, str) else v for k, v in change.items()}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.SaveSmtpConfig(
            pb.SaveSmtpConfigRequest(**_settings(stack, **values)), metadata=stack.md(caller)
        )
    assert _details(err.value)[0] == reason
    assert await _saved_rows(owner_engine, tenant.id) == 0


async def test_the_json_gateway_speaks_the_spec_shapes(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = make_caller(await make_tenant())
    headers = {"authorization": f"Bearer {stack.server.token(caller)}"}
    url = f"{stack.sidecar_url}/api/v1/conexoes/email/smtp/detectar"
    found = await stack.http.post(url, json={"email": "usuario@gmail.com"}, headers=headers)
    assert found.status_code == 200, found.text
    body = found.json()
    assert {k: body[k] for k in ("detected", "provider", "smtp_host", "smtp_port", "smtp_tls")} == {
        "detected": True,
        "provider": "Gmail",
        "smtp_host": "smtp.gmail.com",
        "smtp_port": 587,
        "smtp_tls": True,
    }
    assert body["requires_app_password"] is True
    assert body["help_url"] == "https://support.google.com/accounts/answer/185833"

    bad = await stack.http.post(url, json={"email": "sem-arroba"}, headers=headers)
    assert bad.status_code == 400
    details = bad.json()["details"]
    violations = [d for d in details if d["@type"].endswith("BadRequest")]
    assert violations[0]["field_violations"][0]["field"] == "email"

    status = await stack.http.get(f"{stack.sidecar_url}/api/v1/conexoes/email", headers=headers)
    assert status.status_code == 200
    assert status.json()["status"] in ("CONNECTION_STATUS_DISCONNECTED", "disconnected")
