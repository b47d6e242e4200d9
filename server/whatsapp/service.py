"""WhatsAppService: the thin servicer (proto in, plain values to the use case, proto out
through views.py).

The room: connection.py (the session row, the WAHA client), sessions.py (start, QR, pairing,
status, disconnect, list), messages.py (send, conversations, messages), streaming.py
(WatchWhatsAppStatus), webhook.py, inbound.py, sending.py and cleanup.py (queued work, registered
by jobs.py), health.py (the periodic reconciliation with WAHA), errors.py, views.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from renove.conexoes.v1 import whatsapp_service_pb2 as pb
from renove.conexoes.v1 import whatsapp_service_pb2_grpc as pb_grpc
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Message
from server.bootstrap import Deps
from server.idempotency import answer_in, idempotent
from server.interceptors.context import current_caller
from server.whatsapp import media, messages, reading, sessions, streaming, views
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
        return views.started(await sessions.start(self.deps, current_caller()))

    async def GetWhatsAppQrCode(
        self, request: pb.GetWhatsAppQrCodeRequest, context: Context
    ) -> pb.GetWhatsAppQrCodeResponse:
        qr = await sessions.qr_code(self.deps, current_caller(), regenerate=request.gerar_novo)
        return views.qr_code(qr)

    @idempotent
    async def RequestWhatsAppPairingCode(
        self, request: pb.RequestWhatsAppPairingCodeRequest, context: Context
    ) -> pb.RequestWhatsAppPairingCodeResponse:
        code = await sessions.pairing_code(self.deps, current_caller(), request.phone_number)
        return pb.RequestWhatsAppPairingCodeResponse(
            code=code,
            expires_in=self.deps.settings.whatsapp_qr_ttl_seconds,
            status=pb.WAHA_SESSION_STATUS_QR_PENDING,
        )

    async def GetWhatsAppStatus(
        self, request: pb.GetWhatsAppStatusRequest, context: Context
    ) -> pb.GetWhatsAppStatusResponse:
        caller = current_caller()
        row, owner = await sessions.get_status(self.deps, caller)
        return pb.GetWhatsAppStatusResponse(
            session=views.status_of(row, owner, str(caller.user_id))
        )

    async def WatchWhatsAppStatus(
        self, request: pb.WatchWhatsAppStatusRequest, context: Context
    ) -> AsyncIterator[pb.WatchWhatsAppStatusResponse]:
        updates = streaming.watch(
            self.deps,
            current_caller(),
            all_sessions=request.all_sessions,
            usuario_id=request.usuario_id,
        )
        async for update in updates:
            yield views.watch_response(update)

    @idempotent
    async def DisconnectWhatsApp(
        self, request: pb.DisconnectWhatsAppRequest, context: Context
    ) -> pb.DisconnectWhatsAppResponse:
        row, owner = await sessions.disconnect(self.deps, current_caller(), request.usuario_id)
        return pb.DisconnectWhatsAppResponse(session=views.session_proto(row, owner))

    async def ListWhatsAppSessions(
        self, request: pb.ListWhatsAppSessionsRequest, context: Context
    ) -> pb.ListWhatsAppSessionsResponse:
        found = await sessions.list_sessions(
            self.deps,
            current_caller(),
            # An unknown status matches nothing (no stored status is "-").
            status=(views.PROTO_STATUS.get(request.status) or "-") if request.status else None,
            size=request.page_size,
            token=request.page_token,
        )
        return pb.ListWhatsAppSessionsResponse(
            sessions=[views.session_proto(r, nome) for r, nome in found.rows],
            next_page_token=found.next_page_token,
            total_size=found.total_size,
        )

    @idempotent
    async def SendWhatsAppMessage(
        self, request: pb.SendWhatsAppMessageRequest, context: Context
    ) -> pb.SendWhatsAppMessageResponse:
        outgoing = messages.Outgoing(
            text=request.text,
            to=request.to,
            contato_id=request.contato_id,
            reply_to=request.reply_to,
            request_id=request.request_id,
        )

        def respond(message: Message, job_id: uuid.UUID | None) -> pb.SendWhatsAppMessageResponse:
            return pb.SendWhatsAppMessageResponse(
                message=views.message_proto(message), job_id=str(job_id or "")
            )

        async def answer(tx: AsyncSession, message: Message, job_id: uuid.UUID | None) -> None:
            await answer_in(tx, respond(message, job_id))

        message, job_id = await messages.send(
            self.deps, current_caller(), outgoing, before_commit=answer
        )
        return respond(message, job_id)

    async def ListWhatsAppConversations(
        self, request: pb.ListWhatsAppConversationsRequest, context: Context
    ) -> pb.ListWhatsAppConversationsResponse:
        found, token = await messages.list_conversations(
            self.deps,
            current_caller(),
            only_unread=request.somente_nao_lidas,
            size=request.page_size,
            token=request.page_token,
        )
        return pb.ListWhatsAppConversationsResponse(
            conversations=[views.conversation(c) for c in found], next_page_token=token
        )

    async def ListWhatsAppMessages(
        self, request: pb.ListWhatsAppMessagesRequest, context: Context
    ) -> pb.ListWhatsAppMessagesResponse:
        found, token = await messages.list_messages(
            self.deps,
            current_caller(),
            request.contato_id,
            size=request.page_size,
            token=request.page_token,
        )
        return pb.ListWhatsAppMessagesResponse(
            messages=[views.message_proto(m) for m in found], next_page_token=token
        )

    async def GetWhatsAppMessageMedia(
        self, request: pb.GetWhatsAppMessageMediaRequest, context: Context
    ) -> pb.GetWhatsAppMessageMediaResponse:
        found = await media.fetch_media(self.deps, current_caller(), request.message_id)
        return pb.GetWhatsAppMessageMediaResponse(
            media=views.media_proto(found.media), data=found.data
        )

    @idempotent
    async def MarkWhatsAppConversationRead(
        self, request: pb.MarkWhatsAppConversationReadRequest, context: Context
    ) -> pb.MarkWhatsAppConversationReadResponse:
        done = await reading.mark_read(self.deps, current_caller(), request.contato_id)
        return pb.MarkWhatsAppConversationReadResponse(
            marcadas=done.marked, whatsapp_notificado=done.told_whatsapp
        )


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_WhatsAppServiceServicer_to_server(WhatsAppServicer(deps), server)
    return SERVICE_NAME


def register_jobs(deps: Deps) -> None:
    """Job handlers for the worker and the health check for the scheduler (jobs.py)."""
    _register_jobs(deps)
