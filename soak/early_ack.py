"""`python -m soak.early_ack serve`: the server with a deliberate bug, for proving the soak
catches one. WAHA webhooks are answered 200 at once and stored a moment later in the
background, so a server killed in between has promised events it never stored.

Only the soak starts this (`python -m soak --inject early-ack`); nothing in the server knows it.
"""

from __future__ import annotations

import asyncio
import json

import grpc
from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb

from server.__main__ import main
from server.ingress.service import WebhookIngressServicer

STORE_AFTER_S = 1.5
_original = WebhookIngressServicer.DeliverWahaWebhook
_pending: set[asyncio.Task[object]] = set()


async def _store_later(
    self: WebhookIngressServicer,
    request: pb.DeliverWahaWebhookRequest,
    context: grpc.aio.ServicerContext,
) -> object:
    await asyncio.sleep(STORE_AFTER_S)
    return await _original(self, request, context)


async def _answer_first(
    self: WebhookIngressServicer,
    request: pb.DeliverWahaWebhookRequest,
    context: grpc.aio.ServicerContext,
) -> pb.DeliverWahaWebhookResponse:
    task = asyncio.create_task(_store_later(self, request, context))
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    body = json.dumps({"status": "accepted"}).encode()
    ok = pb.RawHttpResponse(status_code=200, content_type="application/json", body=body)
    return pb.DeliverWahaWebhookResponse(
        response=ok, outcome=pb.DeliveryOutcome.DELIVERY_OUTCOME_ACCEPTED
    )


WebhookIngressServicer.DeliverWahaWebhook = _answer_first  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
