"""OutboundWebhooksService: the thin servicer (proto <-> endpoints). Admins only (the
permission interceptor); mutations honour AIP-155 request ids."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import outbound_webhooks_service_pb2 as pb
from renove.conexoes.v1 import outbound_webhooks_service_pb2_grpc as pb_grpc

from db.models import OutboundWebhook
from server.bootstrap import Deps
from server.idempotency import answer_in, idempotent
from server.interceptors.context import current_caller
from server.outbound_webhooks import endpoints
from server.outbound_webhooks.jobs import register_jobs as _register_jobs
from server.paging import keyset_after, keyset_page, page_size
from server.protoconv import timestamp

_MAX_PAGE = 100
_PREFIX = "EVENT_KIND_"


def view(row: OutboundWebhook) -> pb.OutboundWebhook:
    return pb.OutboundWebhook(
        id=str(row.id),
        url=row.url,
        eventos=[cpb.EventKind.Value(_PREFIX + kind) for kind in row.eventos or []],
        descricao=row.descricao or "",
        ativo=row.ativo,
        criado_em=timestamp(row.criado_em),
        atualizado_em=timestamp(row.atualizado_em),
    )


def _input(m: pb.OutboundWebhook, *, default_active: bool) -> endpoints.EndpointInput:
    kinds = [cpb.EventKind.Name(k).removeprefix(_PREFIX) for k in m.eventos]
    return endpoints.EndpointInput(
        url=m.url.strip(),
        eventos=kinds,
        descricao=m.descricao,
        ativo=m.ativo or default_active,
    )


CreateRpc = Callable[
    [Any, pb.CreateOutboundWebhookRequest, Any], Awaitable[pb.CreateOutboundWebhookResponse]
]


def _shows_the_secret(method: CreateRpc) -> CreateRpc:
    """A repeated create answers the stored response, which never holds the secret in clear:
    the repeat shows the same secret, decrypted from the endpoint's row."""

    @functools.wraps(method)  # keeps the @idempotent marker
    async def call(
        self: Any, request: pb.CreateOutboundWebhookRequest, context: Any
    ) -> pb.CreateOutboundWebhookResponse:
        response = await method(self, request, context)
        if not response.secret:
            async with self.deps.db.unit_of_work(current_caller()) as session:
                row = await endpoints.get(session, response.webhook.id)
            response.secret = self.deps.keyring.decrypt(
                row.segredo_encrypted, endpoints.secret_context(row.organizacao_id)
            )
        return response

    return call


class OutboundWebhooksServicer(pb_grpc.OutboundWebhooksServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    @property
    def _targets(self) -> endpoints.TargetRules:
        settings = self.deps.settings
        return endpoints.TargetRules(
            settings.webhook_allow_private_targets, settings.dns_nameservers
        )

    @_shows_the_secret
    @idempotent
    async def CreateOutboundWebhook(
        self, request: pb.CreateOutboundWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateOutboundWebhookResponse:
        caller = current_caller()
        # `ativo` is a plain bool: a new endpoint is active unless the request says otherwise
        # through UpdateOutboundWebhook.
        data = _input(request.webhook, default_active=True)
        async with self.deps.db.unit_of_work(caller) as session:
            row, secret = await endpoints.create(
                session, caller, self.deps.keyring, data, targets=self._targets
            )
            response = pb.CreateOutboundWebhookResponse(webhook=view(row))
            await answer_in(session, response)  # stored without the secret
        response.secret = secret
        return response

    async def ListOutboundWebhooks(
        self, request: pb.ListOutboundWebhooksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOutboundWebhooksResponse:
        size = min(page_size(request.page_size), _MAX_PAGE)
        after = keyset_after(
            request.page_token,
            (("t", "time"), ("i", "uuid")),
            (OutboundWebhook.criado_em, OutboundWebhook.id),
            descending=True,
        )
        async with self.deps.db.unit_of_work(current_caller()) as session:
            rows = await endpoints.list_page(session, after=after, limit=size + 1)
        page, token = keyset_page(
            rows, size, lambda r: {"t": r.criado_em.isoformat(), "i": str(r.id)}
        )
        return pb.ListOutboundWebhooksResponse(
            webhooks=[view(r) for r in page], next_page_token=token
        )

    @idempotent
    async def UpdateOutboundWebhook(
        self, request: pb.UpdateOutboundWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateOutboundWebhookResponse:
        caller = current_caller()
        paths = set(request.update_mask.paths)
        data = _input(request.webhook, default_active=False)
        async with self.deps.db.unit_of_work(caller) as session:
            row = await endpoints.update(
                session, caller, request.id, data, paths, targets=self._targets
            )
            response = pb.UpdateOutboundWebhookResponse(webhook=view(row))
            await answer_in(session, response)
            return response

    @idempotent
    async def DeleteOutboundWebhook(
        self, request: pb.DeleteOutboundWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteOutboundWebhookResponse:
        caller = current_caller()
        response = pb.DeleteOutboundWebhookResponse()
        async with self.deps.db.unit_of_work(caller) as session:
            await endpoints.delete(session, caller, request.id)
            await answer_in(session, response)
        return response


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_OutboundWebhooksServiceServicer_to_server(OutboundWebhooksServicer(deps), server)
    return "renove.conexoes.v1.OutboundWebhooksService"


def register_jobs(deps: Deps) -> None:
    _register_jobs(deps)
