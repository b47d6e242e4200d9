"""The platform mailer: alerts e-mailed once through a real SMTP server (aiosmtpd), retried,
and kept visible in the app when they cannot be mailed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import grpc
import pytest
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import connections_service_pb2_grpc as pb_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import EmailConnection
from server.auth.caller import Caller, Role
from server.connections.alert_mail import send_pending_alert_mail
from server.providers.errors import ProviderServerError
from server.resilience.alerts import BreakerAlerts, connection_broken
from server.resilience.breaker import BreakerConfig, BreakerRegistry
from tests.conftest import MakeTenant, MigratedDatabase, PgServer
from tests.integration.meta_leads_support import isolated_database, owner_engine_for
from tests.support import grpc_server
from tests.support.grpc_server import RunningServer, running_server
from tests.support.jobs import ahead_clock, rows
from tests.support.mail_servers import (
    SMTP_PASSWORD,
    SMTP_USER,
    SmtpServerHandle,
    make_certificates,
    smtp_server,
)

SUPER_ADMINS = ["ops@renove.example", "cto@renove.example"]


@pytest.fixture(scope="module")
async def database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
    # The mailer's settings are platform-wide: a database of its own keeps them from others.
    async with isolated_database(pg) as fresh:
        yield fresh


@pytest.fixture(scope="module")
async def owner_engine(database: MigratedDatabase) -> AsyncIterator[AsyncEngine]:
    async with owner_engine_for(database) as engine:
        yield engine


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[SmtpServerHandle, Path]:
    folder = tmp_path_factory.mktemp("mail")
    certs = make_certificates(folder)
    with smtp_server(certs.trusted) as handle:
        yield handle, certs.ca_file  # type: ignore[misc]


@pytest.fixture(scope="module")
async def mail_server(
    database: MigratedDatabase,
    mailbox: tuple[SmtpServerHandle, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningServer]:
    _, ca_file = mailbox
    settings = grpc_server.test_settings(
        database.owner_url,
        str(tmp_path_factory.mktemp("mailer-server")),
        smtp_allow_private_hosts=True,
        smtp_ca_file=str(ca_file),
        smtp_timeout_seconds=2.0,
        worker_concurrency=0,  # the sweeps run here, when the test says so
    )
    async with running_server(settings) as running:
        yield running


def _stub(server: RunningServer) -> pb_grpc.ConnectionsServiceStub:
    return pb_grpc.ConnectionsServiceStub(server.channel)


async def _configure(server: RunningServer, smtp: SmtpServerHandle) -> pb.PlatformCredentials:
    response = await _stub(server).UpdatePlatformCredentials(
        pb.UpdatePlatformCredentialsRequest(
            provider=pb.PLATFORM_PROVIDER_MAILER,
            mailer=pb.MailerCredentialsUpdate(
                host=smtp.host,
                port=smtp.port,
                username=SMTP_USER,
                password=SMTP_PASSWORD,
                from_address="alertas@renove.example",
                super_admin_emails=SUPER_ADMINS,
            ),
        ),
        metadata=server.metadata(server.super_admin()),
    )
    return response.credentials


def _mails_about(smtp: SmtpServerHandle, needle: str) -> list[Message]:
    found = [message_from_bytes(r.data) for r in smtp.handler.received]
    return [m for m in found if needle in str(m.get_payload())]


async def test_mailer_settings_are_write_only_and_checked(
    mail_server: RunningServer, mailbox: tuple[SmtpServerHandle, Path]
) -> None:
    smtp, _ = mailbox
    stored = await _configure(mail_server, smtp)
    assert stored.source == pb.CREDENTIAL_SOURCE_DATABASE
    assert stored.mailer.host == smtp.host and stored.mailer.port == smtp.port
    assert stored.mailer.password_set and list(stored.mailer.super_admin_emails) == SUPER_ADMINS
    assert SMTP_PASSWORD not in str(stored)
    for bad in (
        pb.MailerCredentialsUpdate(from_address="not-an-address"),
        pb.MailerCredentialsUpdate(port=70000),
        pb.MailerCredentialsUpdate(super_admin_emails=["ops@renove.example", "nope"]),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _stub(mail_server).UpdatePlatformCredentials(
                pb.UpdatePlatformCredentialsRequest(
                    provider=pb.PLATFORM_PROVIDER_MAILER, mailer=bad
                ),
                metadata=mail_server.metadata(mail_server.super_admin()),
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    again = await _stub(mail_server).GetPlatformCredentials(
        pb.GetPlatformCredentialsRequest(provider=pb.PLATFORM_PROVIDER_MAILER),
        metadata=mail_server.metadata(mail_server.super_admin()),
    )
    assert again.credentials.mailer.from_address == "alertas@renove.example"  # unchanged
    assert "alerts.mail" in mail_server.deps.scheduler.names


async def test_a_provider_down_for_five_minutes_is_one_alert_and_one_email(
    mail_server: RunningServer, mailbox: tuple[SmtpServerHandle, Path]
) -> None:
    smtp, _ = mailbox
    await _configure(mail_server, smtp)
    db = mail_server.deps.db
    clock = ahead_clock()
    provider = f"prov_{uuid.uuid4().hex[:6]}"
    breakers = BreakerRegistry(
        clock, {provider: BreakerConfig(2, 30.0)}, on_transition=BreakerAlerts(db)
    )

    async def fail() -> None:
        with pytest.raises(ProviderServerError):
            async with breakers.guard(provider):
                raise ProviderServerError("down", provider=provider, status_code=502)

    await fail()
    await fail()
    for _ in range(10):  # 5 minutes of failed half-open probes, a sweep every 30 s
        clock.advance(30)
        await fail()
        await breakers.drain()
        await send_pending_alert_mail(mail_server.deps)

    mails = _mails_about(smtp, f"Circuit breaker {provider}")
    assert len(mails) == 1
    assert mails[0]["Subject"] == "[Renove Conexoes] Provedor indisponivel"
    assert sorted(r.strip() for r in mails[0]["To"].split(",")) == sorted(SUPER_ADMINS)
    listed = await _stub(mail_server).ListAlerts(
        pb.ListAlertsRequest(kind=pb.ALERT_KIND_CIRCUIT_OPEN),
        metadata=mail_server.metadata(mail_server.super_admin()),
    )
    mine = [a for a in listed.alerts if a.entidade_id == provider]
    assert len(mine) == 1 and mine[0].ocorrencias == 11
    assert mine[0].detalhes["email"] == "sent"


async def test_tenant_alerts_reach_admins_and_owner_and_failures_stay_visible(
    mail_server: RunningServer,
    mailbox: tuple[SmtpServerHandle, Path],
    make_tenant: MakeTenant,
    owner_engine: AsyncEngine,
) -> None:
    smtp, _ = mailbox
    await _configure(mail_server, smtp)
    db = mail_server.deps.db
    tenant = await make_tenant(members=2)
    owner = tenant.members[0]

    async def broken(error: str, owner: uuid.UUID) -> uuid.UUID:
        conn_id = uuid.uuid4()
        async with owner_engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO conexoes_email (id, organizacao_id, usuario_id, tipo, email)"
                " VALUES ($1, $2, $3, 'gmail_oauth', 'x@example.com')",
                (conn_id, tenant.id, owner),
            )
        async with db.unit_of_work(Caller(role=Role.SERVICE, tenant_id=tenant.id)) as session:
            await connection_broken(
                session,
                model=EmailConnection,
                connection_id=conn_id,
                tenant_id=tenant.id,
                owner_id=owner,
                connection_type="EMAIL_GMAIL_OAUTH",
                error=error,
            )
        return conn_id

    await broken("first invalid_grant", owner)
    await send_pending_alert_mail(mail_server.deps)
    mails = _mails_about(smtp, "first invalid_grant")
    assert len(mails) == 1
    emails = await rows(
        owner_engine,
        "SELECT id, email FROM usuarios WHERE organizacao_id = :t",
        t=tenant.id,
    )
    by_id = {u.id: u.email for u in emails}
    to = sorted(r.strip() for r in mails[0]["To"].split(","))
    assert to == sorted([by_id[tenant.admin_id], by_id[owner]])  # not the other member

    # The mailbox answers 451 (try later), then 550: retried once, then failed for good.
    smtp.handler.replies[:] = ["451 4.3.0 try later", "550 5.7.1 refused"]
    second = await broken("second invalid_grant", tenant.members[1])
    await send_pending_alert_mail(mail_server.deps)
    state = await rows(
        owner_engine,
        "SELECT details->>'email' AS email, details->>'email_tentativas' AS n FROM alerts"
        " WHERE details->>'entidade_id' = :c",
        c=str(second),
    )
    assert [(s.email, s.n) for s in state] == [("pending", "1")]
    await send_pending_alert_mail(mail_server.deps)
    await send_pending_alert_mail(mail_server.deps)  # nothing more is tried
    state = await rows(
        owner_engine,
        "SELECT id, details->>'email' AS email, details->>'email_tentativas' AS n FROM alerts"
        " WHERE details->>'entidade_id' = :c",
        c=str(second),
    )
    assert [(s.email, s.n) for s in state] == [("failed", "2")]
    assert _mails_about(smtp, "second invalid_grant") == []
    listed = await _stub(mail_server).ListAlerts(
        pb.ListAlertsRequest(),
        metadata=mail_server.metadata(
            Caller(role=Role.ADMIN, tenant_id=tenant.id, user_id=tenant.admin_id)
        ),
    )
    assert str(state[0].id) in {a.id for a in listed.alerts}  # still there for the admins
