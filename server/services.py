"""Registers every service of the contract on the gRPC server.

A room (server/<connection>/) that is built exposes ``register(server, deps) -> service name``;
a service whose room is not built yet is served by its generated base class, which answers
UNIMPLEMENTED, while authentication and permissions already apply to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import import_module

import grpc

from server.bootstrap import Deps

Register = Callable[[grpc.aio.Server, Deps], str]

# Service -> (generated module, room module providing `register`, or None).
SERVICES: dict[str, tuple[str, str | None]] = {
    "WhatsAppService": ("whatsapp_service", "server.whatsapp.service"),
    "MetaLeadsService": ("meta_leads_service", "server.meta_leads.service"),
    "ConversionsService": ("conversions_service", "server.conversions.service"),
    "AudiencesService": ("audiences_service", "server.audiences.service"),
    "GoogleCalendarService": ("google_calendar_service", "server.google_calendar.service"),
    "EmailService": ("email_service", "server.email.service"),
    "InstagramService": ("instagram_service", "server.instagram.service"),
    "ConnectionsService": ("connections_service", "server.connections.service"),
    "WebhookIngressService": ("webhook_ingress_service", "server.ingress.service"),
    "CrmEventsService": ("crm_events_service", "server.crm_events.service"),
    "CrmDirectoryService": ("crm_directory_service", "server.crm_directory.service"),
    "OutboundWebhooksService": ("outbound_webhooks_service", "server.outbound_webhooks.service"),
    "KpisService": ("kpis_service", "server.kpis.service"),
}
PACKAGE = "renove.conexoes.v1"


def register_jobs(deps: Deps, extra_modules: Iterable[str] = ()) -> None:
    """Lets each room (and each of `extra_modules`) that defines ``register_jobs(deps)``
    register its job handlers (deps.jobs) and periodic tasks (deps.scheduler)."""
    rooms = [room for _, room in SERVICES.values() if room is not None]
    for name in dict.fromkeys([*rooms, *extra_modules]):
        hook = getattr(import_module(name), "register_jobs", None)
        if hook is not None:
            hook(deps)


def register_services(server: grpc.aio.Server, deps: Deps) -> list[str]:
    names = []
    for service, (generated, room) in SERVICES.items():
        if room is not None:
            register: Register = import_module(room).register
            names.append(register(server, deps))
            continue
        grpc_module = import_module(f"{PACKAGE}.{generated}_pb2_grpc")
        base = getattr(grpc_module, f"{service}Servicer")
        getattr(grpc_module, f"add_{service}Servicer_to_server")(base(), server)
        names.append(f"{PACKAGE}.{service}")
    return names
