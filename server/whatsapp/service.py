"""WhatsAppService: the thin servicer (proto in, domain call, proto out).

The logic lives beside it: sessions.py (start, QR, pairing, status, disconnect, list),
messages.py (send, conversations), streaming.py (WatchWhatsAppStatus), jobs.py and
webhook.py (queued work), health.py (the periodic reconciliation with WAHA).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from renove.conexoes.v1 import whatsapp_service_pb2 as pb
from renove.conexoes.v1 import whatsapp_service_pb2_grpc as pb_grpc

from server.bootstrap import Deps
from server.idempotency import idempotent
from server.interceptors.context import current_caller
from server.whatsapp import messages, sessions, streaming
from server.whatsapp.jobs import register_jobs as _register_jobs

SERVICE_NAME = "renove.conexoes.v1.WhatsAppService"
Context: TypeAlias = grpc.aio.ServicerContext


class WhatsAppServicer(pb_grpc.WhatsAppServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    @idempotent
    async def StartWhatsAppSession(
        self, request: pb.StartWhatsAppSessionRequest, context: Context
    ) -> pb.StartWhatsAppSessionResponse:
        return await sessions.start(self.deps, current_caller(), request)

    async def GetWhatsAppQrCode(
        self, request: pb.GetWhatsAppQrCodeRequest, context: Context
    ) -> pb.GetWhatsAppQrCodeResponse:
        return await sessions.qr_code(self.deps, current_caller(), request)

    @idempotent
    async def RequestWhatsAppPairingCode(
        self, request: pb.RequestWhatsAppPairingCodeRequest, context: Context
    ) -> pb.RequestWhatsAppPairingCodeResponse:
        return await sessions.pairing_code(self.deps, current_caller(), request)

    async def GetWhatsAppStatus(
        self, request: pb.GetWhatsAppStatusRequest, context: Context
    ) -> pb.GetWhatsAppStatusResponse:
        return await sessions.get_status(self.deps, current_caller())

    async def WatchWhatsAppStatus(
        self, request: pb.WatchWhatsAppStatusRequest, context: Context
    ) -> AsyncIterator[pb.WatchWhatsAppStatusResponse]:
        async for message in streaming.watch(self.deps, current_caller(), request):
            yield message

    @idempotent
    async def DisconnectWhatsApp(
        self, request: pb.DisconnectWhatsAppRequest, context: Context
    ) -> pb.DisconnectWhatsAppResponse:
        return await sessions.disconnect(self.deps, current_caller(), request)

    async def ListWhatsAppSessions(
        self, request: pb.ListWhatsAppSessionsRequest, context: Context
    ) -> pb.ListWhatsAppSessionsResponse:
        return await sessions.list_sessions(self.deps, current_caller(), request)

    @idempotent
    async def SendWhatsAppMessage(
        self, request: pb.SendWhatsAppMessageRequest, context: Context
    ) -> pb.SendWhatsAppMessageResponse:
        return await messages.send(self.deps, current_caller(), request)

    async def ListWhatsAppConversations(
        self, request: pb.ListWhatsAppConversationsRequest, context: Context
    ) -> pb.ListWhatsAppConversationsResponse:
        return await messages.list_conversations(self.deps, current_caller(), request)

    async def ListWhatsAppMessages(
        self, request: pb.ListWhatsAppMessagesRequest, context: Context
    ) -> pb.ListWhatsAppMessagesResponse:
        return await messages.list_messages(self.deps, current_caller(), request)


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_WhatsAppServiceServicer_to_server(WhatsAppServicer(deps), server)
    return SERVICE_NAME


def register_jobs(deps: Deps) -> None:
    """Job handlers for the worker and the health check for the scheduler (jobs.py)."""
    _register_jobs(deps)
