"""EmailService: the thin servicer (proto in, domain call, proto out).

The logic lives beside it: gmail.py (OAuth and the Gmail API), smtp_setup.py (detect, test,
save), status.py (read, disconnect), sending.py (SendEmail), delivery.py (the send job),
tracking.py (the pixel).
"""

from __future__ import annotations

from typing import TypeAlias

import grpc
from renove.conexoes.v1 import email_service_pb2 as pb
from renove.conexoes.v1 import email_service_pb2_grpc as pb_grpc

from server.bootstrap import Deps
from server.email import gmail, sending, smtp_setup, status, tracking
from server.email.connection import smtp_client
from server.email.jobs import register_jobs as _register_jobs
from server.idempotency import idempotent
from server.interceptors.context import current_caller
from server.security.browser_binding import nonce_from_metadata

SERVICE_NAME = "renove.conexoes.v1.EmailService"
Context: TypeAlias = grpc.aio.ServicerContext


class EmailServicer(pb_grpc.EmailServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.smtp = smtp_client(deps)

    async def GetGmailAuthUrl(
        self, request: pb.GetGmailAuthUrlRequest, context: Context
    ) -> pb.GetGmailAuthUrlResponse:
        made = await gmail.auth_url(self.deps, current_caller(), request)
        # The browser binding's cookie (the gateway turns it into Set-Cookie).
        await context.send_initial_metadata(made.cookie_metadata)
        return pb.GetGmailAuthUrlResponse(oauth=made.oauth)

    async def HandleGmailOAuthCallback(
        self, request: pb.HandleGmailOAuthCallbackRequest, context: Context
    ) -> pb.HandleGmailOAuthCallbackResponse:
        nonce = nonce_from_metadata(context.invocation_metadata())
        return await gmail.callback(self.deps, request, nonce)

    @idempotent
    async def DetectSmtpSettings(
        self, request: pb.DetectSmtpSettingsRequest, context: Context
    ) -> pb.DetectSmtpSettingsResponse:
        return await smtp_setup.detect(self.deps, request)

    @idempotent
    async def TestSmtpConnection(
        self, request: pb.TestSmtpConnectionRequest, context: Context
    ) -> pb.TestSmtpConnectionResponse:
        return await smtp_setup.test(self.deps, self.smtp, current_caller(), request)

    @idempotent
    async def SaveSmtpConfig(
        self, request: pb.SaveSmtpConfigRequest, context: Context
    ) -> pb.SaveSmtpConfigResponse:
        return await smtp_setup.save(self.deps, self.smtp, current_caller(), request)

    async def GetEmailConnection(
        self, request: pb.GetEmailConnectionRequest, context: Context
    ) -> pb.GetEmailConnectionResponse:
        return await status.get(self.deps, current_caller())

    @idempotent
    async def DisconnectEmail(
        self, request: pb.DisconnectEmailRequest, context: Context
    ) -> pb.DisconnectEmailResponse:
        return await status.disconnect(self.deps, current_caller(), request)

    @idempotent
    async def SendEmail(
        self, request: pb.SendEmailRequest, context: Context
    ) -> pb.SendEmailResponse:
        return await sending.send(self.deps, current_caller(), request)

    async def GetSentEmail(
        self, request: pb.GetSentEmailRequest, context: Context
    ) -> pb.GetSentEmailResponse:
        return await tracking.get_sent(self.deps, current_caller(), request)

    async def RecordEmailOpen(
        self, request: pb.RecordEmailOpenRequest, context: Context
    ) -> pb.RecordEmailOpenResponse:
        return await tracking.record_open(self.deps, request)


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_EmailServiceServicer_to_server(EmailServicer(deps), server)
    return SERVICE_NAME


def register_jobs(deps: Deps) -> None:
    _register_jobs(deps)
