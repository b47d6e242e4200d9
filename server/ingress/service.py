"""WebhookIngressService: the sidecar hands over raw provider requests; this decides the answer.

Order for every delivery: authenticate (signature or channel token) before trusting a byte,
then parse, then resolve the recipient from our own records, then store + enqueue (inbox.py),
and only then answer 200. What fails authentication is audited and never processed. A database
outage surfaces as UNAVAILABLE (the error interceptor, server/interceptors/outages.py) so the
sidecar answers 503 and the provider retries.
"""

from __future__ import annotations

import grpc
from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb
from renove.conexoes.v1 import webhook_ingress_service_pb2_grpc as pb_grpc

from server.bootstrap import Deps
from server.ingress import google_calendar, meta, waha
from server.ingress.context import Ingress
from server.ingress.routes import INSTAGRAM, META_LEADGEN, instagram_events, meta_leadgen_events


class WebhookIngressServicer(pb_grpc.WebhookIngressServiceServicer):
    """One deliverer per provider (waha.py, meta.py, google_calendar.py)."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.ingress = Ingress(deps)

    async def DeliverWahaWebhook(
        self, request: pb.DeliverWahaWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeliverWahaWebhookResponse:
        return await waha.deliver(self.ingress, request)

    async def VerifyMetaLeadsWebhook(
        self, request: pb.VerifyMetaLeadsWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyMetaLeadsWebhookResponse:
        response, outcome = await meta.handshake(self.ingress, request.request)
        return pb.VerifyMetaLeadsWebhookResponse(response=response, outcome=outcome)

    async def VerifyInstagramWebhook(
        self, request: pb.VerifyInstagramWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyInstagramWebhookResponse:
        response, outcome = await meta.handshake(self.ingress, request.request)
        return pb.VerifyInstagramWebhookResponse(response=response, outcome=outcome)

    async def DeliverMetaLeadsWebhook(
        self, request: pb.DeliverMetaLeadsWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeliverMetaLeadsWebhookResponse:
        secret = (await self.ingress.platform("meta")).get("app_secret")
        outcome, response, ids = await meta.deliver_batch(
            self.ingress, META_LEADGEN, request.request, [secret], meta_leadgen_events
        )
        return pb.DeliverMetaLeadsWebhookResponse(response=response, outcome=outcome, inbox_ids=ids)

    async def DeliverInstagramWebhook(
        self, request: pb.DeliverInstagramWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeliverInstagramWebhookResponse:
        # Which secret signs Instagram-Login webhooks is not settled in Meta's documentation
        # (docs/providers.md): the Instagram app secret first, then the Meta app secret.
        secrets = [
            (await self.ingress.platform("instagram")).get("app_secret"),
            (await self.ingress.platform("meta")).get("app_secret"),
        ]
        outcome, response, ids = await meta.deliver_batch(
            self.ingress, INSTAGRAM, request.request, secrets, instagram_events
        )
        return pb.DeliverInstagramWebhookResponse(response=response, outcome=outcome, inbox_ids=ids)

    async def DeliverGoogleCalendarWebhook(
        self, request: pb.DeliverGoogleCalendarWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeliverGoogleCalendarWebhookResponse:
        return await google_calendar.deliver(self.ingress, request)


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_WebhookIngressServiceServicer_to_server(WebhookIngressServicer(deps), server)
    return "renove.conexoes.v1.WebhookIngressService"
