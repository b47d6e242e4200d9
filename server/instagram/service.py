"""InstagramService: the thin servicer (proto <-> the Instagram room). Permissions (admin, or a
member granted `conexao.instagram_direct`; the service identity for the callback, refresh and
automated sends) are enforced by the interceptor before any of this."""

from __future__ import annotations

import grpc
from renove.conexoes.v1 import instagram_service_pb2 as pb
from renove.conexoes.v1 import instagram_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import resources_pb2

from server.auth.caller import Role
from server.bootstrap import Deps
from server.errors import ConnectionNotFound, PermissionNotGranted
from server.idempotency import answer_in, idempotent
from server.instagram import conversations, oauth, refresh, sending, settings
from server.instagram.connection import dead_token_error, own_connection
from server.instagram.jobs import register_jobs as _register_jobs
from server.instagram.views import ATTACHMENT_KIND, connection_proto, message_proto
from server.interceptors.context import current_caller
from server.oauth_views import callback_result, hand_binding, oauth_url
from server.protoconv import parse_uuid, timestamp
from server.providers.instagram import SCOPES
from server.security.browser_binding import nonce_from_metadata


class InstagramServicer(pb_grpc.InstagramServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def GetInstagramAuthUrl(
        self, request: pb.GetInstagramAuthUrlRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInstagramAuthUrlResponse:
        url = await oauth.auth_url(self.deps, current_caller(), request.return_to)
        await hand_binding(context, self.deps, url.binding)
        return pb.GetInstagramAuthUrlResponse(
            oauth=oauth_url(
                url=url.url,
                state=url.state,
                expires_at=url.expires_at,
                scopes=SCOPES,
                redirect_uri=url.redirect_uri,
            )
        )

    async def HandleInstagramOAuthCallback(
        self, request: pb.HandleInstagramOAuthCallbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.HandleInstagramOAuthCallbackResponse:
        result = await oauth.handle_callback(
            self.deps,
            code=request.code,
            state_token=request.state,
            error=request.error,
            error_reason=request.error_reason,
            browser_nonce=nonce_from_metadata(context.invocation_metadata()),
        )
        return pb.HandleInstagramOAuthCallbackResponse(
            result=callback_result(result, resources_pb2.CONNECTION_TYPE_INSTAGRAM_DIRECT)
        )

    async def GetInstagramConnection(
        self, request: pb.GetInstagramConnectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInstagramConnectionResponse:
        caller = current_caller()
        async with self.deps.db.unit_of_work(caller) as session:
            row = await own_connection(session, caller.require_user())
        return pb.GetInstagramConnectionResponse(
            connection=connection_proto(row, self.deps.clock.now())
        )

    @idempotent
    async def DisconnectInstagram(
        self, request: pb.DisconnectInstagramRequest, context: grpc.aio.ServicerContext
    ) -> pb.DisconnectInstagramResponse:
        row = await oauth.disconnect(self.deps, current_caller())
        return pb.DisconnectInstagramResponse(
            connection=connection_proto(row, self.deps.clock.now())
        )

    @idempotent
    async def SendInstagramMessage(
        self, request: pb.SendInstagramMessageRequest, context: grpc.aio.ServicerContext
    ) -> pb.SendInstagramMessageResponse:
        caller = current_caller()
        attachment = request.message.attachment
        outgoing = sending.Outgoing(
            recipient_id=request.recipient_id.strip(),
            text=request.message.text,
            attachment_type=ATTACHMENT_KIND.get(attachment.type, "")
            if request.message.HasField("attachment")
            else "",
            attachment_url=attachment.payload.url.strip(),
            human_agent_requested=request.tag == pb.INSTAGRAM_MESSAGE_TAG_HUMAN_AGENT,
            request_id=request.request_id,
        )
        sending.validate(outgoing)
        # The message, its job and the stored answer commit together: a repeat returns the
        # first answer and queues nothing.
        async with self.deps.db.unit_of_work(caller) as session:
            queued = await sending.send(self.deps, session, caller, outgoing)
            view = message_proto(queued.message)
            response = pb.SendInstagramMessageResponse(
                message_id=view.message_id,
                id=view.id,
                status=view.status,
                job_id=str(queued.job_id or ""),
                recipient_id=view.recipient_id,
            )
            await answer_in(session, response)
            return response

    async def ListInstagramConversations(
        self, request: pb.ListInstagramConversationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInstagramConversationsResponse:
        return await conversations.list_conversations(
            self.deps,
            current_caller(),
            size=request.page_size,
            token=request.page_token,
            only_unread=request.somente_nao_lidas,
        )

    async def ListInstagramMessages(
        self, request: pb.ListInstagramMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInstagramMessagesResponse:
        return await conversations.list_messages(
            self.deps,
            current_caller(),
            conversation_id=request.id,
            size=request.page_size,
            token=request.page_token,
        )

    @idempotent
    async def RefreshInstagramToken(
        self, request: pb.RefreshInstagramTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefreshInstagramTokenResponse:
        caller = current_caller()
        if request.usuario_id and not (caller.is_admin or caller.role is Role.SERVICE):
            raise PermissionNotGranted("only admins may refresh another user's connection")
        user = parse_uuid(request.usuario_id, "usuario_id") if request.usuario_id else None
        async with self.deps.db.unit_of_work(caller) as session:
            row = await own_connection(session, user or caller.require_user())
        if row is None:
            raise ConnectionNotFound("Instagram is not connected")
        result = await refresh.refresh_now(self.deps, caller, row.id)
        if result.status in ("expired", "revoked"):
            raise dead_token_error(result.status)
        return pb.RefreshInstagramTokenResponse(
            token_expires_at=timestamp(result.token_expires_at),
            refreshed_at=timestamp(result.refreshed_at),
            status=resources_pb2.CONNECTION_STATUS_ACTIVE,
        )

    @idempotent
    async def UpdateInstagramSettings(
        self, request: pb.UpdateInstagramSettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateInstagramSettingsResponse:
        caller = current_caller()
        async with self.deps.db.unit_of_work(caller) as session:
            row = await settings.update(
                session,
                caller,
                funil_id=request.funil_id,
                etapa_id=request.etapa_id,
                usuario_id=request.usuario_id,
            )
            response = pb.UpdateInstagramSettingsResponse(
                connection=connection_proto(row, self.deps.clock.now())
            )
            await answer_in(session, response)
            return response


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_InstagramServiceServicer_to_server(InstagramServicer(deps), server)
    return "renove.conexoes.v1.InstagramService"


def register_jobs(deps: Deps) -> None:
    _register_jobs(deps)
