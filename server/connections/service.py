"""ConnectionsService: composed from one mixin per concern, each in its own module."""

from __future__ import annotations

import logging

import grpc
from renove.conexoes.v1 import connections_service_pb2_grpc as pb_grpc

from server.bootstrap import Deps
from server.connections.alert_mail import INTERVAL_S as ALERT_MAIL_INTERVAL_S
from server.connections.alert_mail import send_pending_alert_mail
from server.connections.alerts_rpc import AlertRpcs
from server.connections.audit_rpc import AuditRpcs
from server.connections.events_rpc import EventRpcs
from server.connections.health_rpc import HealthRpcs
from server.connections.members_rpc import MemberRpcs
from server.connections.overview_rpc import OverviewRpcs
from server.connections.platform_rpc import PlatformRpcs
from server.connections.queue_rpc import QueueRpcs
from server.connections.retry_settings_rpc import RetrySettingsRpcs

_log = logging.getLogger(__name__)


class ConnectionsServicer(
    PlatformRpcs,
    MemberRpcs,
    AuditRpcs,
    QueueRpcs,
    RetrySettingsRpcs,
    HealthRpcs,
    AlertRpcs,
    # Before EventRpcs: its overview_provider feeds WatchEvents' snapshot.
    OverviewRpcs,
    EventRpcs,
    pb_grpc.ConnectionsServiceServicer,
):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_ConnectionsServiceServicer_to_server(ConnectionsServicer(deps), server)
    return "renove.conexoes.v1.ConnectionsService"


def register_jobs(deps: Deps) -> None:
    """The platform mailer's sweep (alert_mail.py)."""

    async def mail_alerts() -> None:
        sent = await send_pending_alert_mail(deps)
        if sent:
            _log.info("alerts e-mailed: %d", sent)

    deps.scheduler.every("alerts.mail", ALERT_MAIL_INTERVAL_S, mail_alerts)
