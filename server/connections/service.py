"""ConnectionsService: composed from one mixin per concern, each in its own module."""

from __future__ import annotations

import grpc
from renove.conexoes.v1 import connections_service_pb2_grpc as pb_grpc

from server.bootstrap import Deps
from server.connections.alerts_rpc import AlertRpcs
from server.connections.audit_rpc import AuditRpcs
from server.connections.events_rpc import EventRpcs
from server.connections.health_rpc import HealthRpcs
from server.connections.members_rpc import MemberRpcs
from server.connections.overview_rpc import OverviewRpcs
from server.connections.platform_rpc import PlatformRpcs
from server.connections.queue_rpc import QueueRpcs


class ConnectionsServicer(
    PlatformRpcs,
    MemberRpcs,
    AuditRpcs,
    QueueRpcs,
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
