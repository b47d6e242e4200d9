"""A person's WhatsApp message (WAHA `message` and `message.any` events) stored in two
round trips: the common case of the "waha_event" job (webhook.py), without an ORM session.

Each call is its own transaction (the `as_caller_whatsapp_*` functions, migration 0026): the
inbox row and the session it names are read; the envelope is parsed here; then, with the
inbox row and its session locked and only while the row is unprocessed, the contact (found
or made), the message, the session's counters, the changes (recorded and announced), the
inbox mark and the job's completion commit together. A repeated job finds the row processed
and only completes. The rows and events are the ones the general path writes (inbound.py
reads the payload and builds the event data for both).

Anything else returns False before anything is written, and webhook.py's general path takes
the event: an inbox row or session gone (at the read, or by the store), an envelope that
does not parse, names another session or carries metadata contradicting our record, and a
sender WhatsApp shows only by a hidden id (hidden_senders.py).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from server.auth.caller import Caller, Role
from server.outbox.record import announced_change
from server.resilience.jobs import Job
from server.whatsapp.connection import CANAL
from server.whatsapp.contacts import new_contact_change
from server.whatsapp.envelope import Envelope, metadata_mismatch
from server.whatsapp.inbound import Incoming, incoming, message_event_data

if TYPE_CHECKING:
    from server.bootstrap import Deps

MESSAGE_EVENTS = frozenset({"message", "message.any"})

_READ = "SELECT * FROM as_caller_whatsapp_inbox($1, $2, $3, $4, $5)"
_STORE = (
    "SELECT * FROM as_caller_whatsapp_store_message($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
    " $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27,"
    " $28, $29, $30, $31, $32, $33, $34, $35, $36, $37)"
)
# What the store takes in place of a contact, a message and their changes when there is none.
_NO_MESSAGE: tuple[None, ...] = (None,) * 27


async def store_received(deps: Deps, job: Job) -> bool:
    """Stores the job's message event; False when the general path must take it."""
    inbox_id = uuid.UUID(str(job.payload["inbox_id"]))
    session_name = job.payload.get("session")
    if job.payload.get("event") not in MESSAGE_EVENTS or not isinstance(session_name, str):
        return False
    caller = Caller(role=Role.SERVICE, tenant_id=job.tenant_id)
    found = await deps.db.fetchrow_as(caller, _READ, inbox_id, session_name)
    if found is None:
        return False
    if found["processed_at"] is not None:
        return True  # a repeat of a job that stored it: nothing left to do
    envelope = Envelope.parse(bytes(found["body"]))
    ids = {"organizacao_id": found["organizacao_id"], "usuario_id": found["usuario_id"]}
    if (
        envelope is None
        or envelope.event not in MESSAGE_EVENTS
        or envelope.session != found["session_name"]
        or metadata_mismatch(envelope, ids) is not None
    ):
        return False
    msg = incoming(envelope.payload, via_any=envelope.event == "message.any")
    if msg is not None and msg.lid is not None:
        return False
    # Ours (stored by the send) or not a person's: only the mark.
    message = _NO_MESSAGE if msg is None else await _message(deps, caller, found, msg)
    completion = job.completion
    lease = (
        (None, None, None, None)
        if completion is None
        else (completion.job_id, completion.worker, completion.attempt, completion.max_attempts)
    )
    stored = await deps.db.fetchrow_as(
        caller, _STORE, inbox_id, deps.clock.now(), found["sessao_id"], *message, *lease
    )
    if stored is None or stored["stored"] is None:
        return False  # the inbox row or session went away since the read: nothing written
    if completion is not None:
        completion.written = stored["completed"]
    return True


async def _message(deps: Deps, caller: Caller, found: Any, msg: Incoming) -> tuple[Any, ...]:
    """The store's contact, message columns and changes. The contact's id is the one it gets
    if it is new; the store sets the one it finds in the message's event otherwise."""
    assert msg.phone is not None
    tenant, owner = found["organizacao_id"], found["usuario_id"]
    contato_id, name = uuid.uuid4(), msg.name or msg.phone
    contact_change = announced_change(
        "CONTACT_CHANGED", new_contact_change(contato_id, msg.phone, msg.name, owner)
    )
    row = msg.row(
        id=uuid.uuid4(),
        organizacao_id=tenant,
        contato_id=contato_id,
        usuario_id=owner,
        criado_em=found["agora"],  # now() of the read, as the column's default would be
    )
    change = announced_change(msg.kind, message_event_data(row))
    return (
        contato_id, msg.phone, name, contact_change[0], contact_change[2],
        row.id, CANAL, owner, row.direcao, row.external_id, row.conteudo, row.tipo,
        row.status, row.ack, row.enviado_em, json.dumps(row.metadata_), row.criado_em,
        *change,
    )  # fmt: skip
