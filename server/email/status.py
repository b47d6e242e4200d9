"""The caller's connection: read it, or disconnect (the password or tokens are forgotten and
a Gmail grant is revoked at Google; the row stays, soft-deleted, so reconnecting keeps its
history)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from renove.conexoes.v1 import email_service_pb2 as pb

from server.audit import record_audit
from server.auth.caller import Caller
from server.email import gmail
from server.email.connection import CONNECTION_TYPES, row_of
from server.email.views import connection_proto, disconnected
from server.errors import ConnectionNotFound
from server.idempotency import answer_in
from server.outbox import record_change
from server.outbox.payloads import connection_changed

if TYPE_CHECKING:
    from server.bootstrap import Deps


async def get(deps: Deps, caller: Caller) -> pb.GetEmailConnectionResponse:
    async with deps.db.unit_of_work(caller) as tx:
        row = await row_of(tx, caller.require_user())
        return pb.GetEmailConnectionResponse(connection=connection_proto(row))


async def disconnect(
    deps: Deps, caller: Caller, request: pb.DisconnectEmailRequest
) -> pb.DisconnectEmailResponse:
    tenant, user = caller.require_tenant(), caller.require_user()
    async with deps.db.unit_of_work(caller) as tx:
        row = await row_of(tx, user, lock=True)
        if row is None:
            raise ConnectionNotFound("no e-mail connection to disconnect")
        tipo = row.tipo
        to_revoke = gmail.stored_grant(deps, row)
        row.smtp_pass_encrypted = row.access_token_encrypted = row.refresh_token_encrypted = None
        row.token_expires_at = None
        row.deletado_em = deps.clock.now()
        await record_audit(
            tx, caller, "email.disconnected", entity_type="conexoes_email", entity_id=row.id,
            details={"tipo": tipo},
        )  # fmt: skip
        # On the change feed, in the change's transaction: a consumer that was away learns it.
        await record_change(
            tx,
            tenant,
            "CONNECTION_CHANGED",
            connection_changed(
                CONNECTION_TYPES[tipo], row.id, "disconnected", requires_reconnect=False
            ),
            user_id=user,
        )
        response = pb.DisconnectEmailResponse(connection=disconnected())
        await answer_in(tx, response)
    if to_revoke:
        # After the commit: the connection is gone here whatever Google says.
        await gmail.revoke(deps, to_revoke)
    return response
