"""Open tracking: a sealed per-message pixel URL, and the opens it counts.

The token is the tenant and message id sealed with the keyring (AES-GCM: it cannot be forged
or pointed at another message). The first open is stamped; later ones add to the count,
except a reload within RELOAD_WINDOW of the last counted open (one reading, several fetches)
and fetches by link scanners and preview bots, which are not readers.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from typing import TYPE_CHECKING

from renove.conexoes.v1 import email_service_pb2 as pb
from sqlalchemy import func, select, update

from db.models import SentEmail
from server.auth.caller import Caller, Role
from server.email.errors import EmailNotFound
from server.email.views import sent_proto
from server.protoconv import parse_uuid
from server.security.cipher import DecryptionError, Keyring, SecretContext

if TYPE_CHECKING:
    from server.bootstrap import Deps

PIXEL_PATH = "/api/v1/conexoes/email/abertura/"
RELOAD_WINDOW = dt.timedelta(seconds=30)
_CONTEXT = SecretContext("emails_enviados", "pixel", None)
# Security scanners and link previewers fetch every image of a message nobody has read.
_PREFETCHERS = re.compile(
    r"bot|crawler|spider|preview|scanner|barracuda|mimecast|proofpoint|symantec|"
    r"messagelabs|trendmicro|fortiguard|safelinks|curl|wget|python-|go-http-client|"
    r"facebookexternalhit|slackbot|whatsapp|headlesschrome",
    re.IGNORECASE,
)


def pixel_token(keyring: Keyring, tenant_id: uuid.UUID, email_id: uuid.UUID) -> str:
    sealed = keyring.encrypt(f"{tenant_id}.{email_id}", _CONTEXT)
    return base64.urlsafe_b64encode(sealed.encode()).decode().rstrip("=")


def pixel_url(deps: Deps, tenant_id: uuid.UUID, email_id: uuid.UUID) -> str:
    return f"{deps.settings.public_url}{PIXEL_PATH}{pixel_token(deps.keyring, tenant_id, email_id)}"


def open_token(keyring: Keyring, token: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tenant, _, email = keyring.decrypt(sealed, _CONTEXT).partition(".")
        return uuid.UUID(tenant), uuid.UUID(email)
    except (ValueError, UnicodeDecodeError, DecryptionError):
        return None


def is_prefetcher(user_agent: str) -> bool:
    return bool(_PREFETCHERS.search(user_agent))


async def record_open(deps: Deps, request: pb.RecordEmailOpenRequest) -> pb.RecordEmailOpenResponse:
    opened = open_token(deps.keyring, request.token) if len(request.token) < 1024 else None
    if opened is None or is_prefetcher(request.user_agent):
        return pb.RecordEmailOpenResponse(contada=False)
    tenant, email_id = opened
    now = deps.clock.now()
    async with deps.db.unit_of_work(Caller(role=Role.SERVICE, tenant_id=tenant)) as tx:
        counted = await tx.execute(
            update(SentEmail)
            .where(
                SentEmail.id == email_id,
                SentEmail.rastrear_abertura.is_(True),
                (SentEmail.ultima_abertura_em.is_(None))
                | (SentEmail.ultima_abertura_em < now - RELOAD_WINDOW),
            )
            .values(
                aberturas=SentEmail.aberturas + 1,
                primeira_abertura_em=func.coalesce(SentEmail.primeira_abertura_em, now),
                ultima_abertura_em=now,
            )
            .returning(SentEmail.id)
        )
        return pb.RecordEmailOpenResponse(contada=counted.first() is not None)


async def get_sent(
    deps: Deps, caller: Caller, request: pb.GetSentEmailRequest
) -> pb.GetSentEmailResponse:
    email_id = parse_uuid(request.id, "id")
    async with deps.db.unit_of_work(caller) as tx:
        query = select(SentEmail).where(SentEmail.id == email_id)
        if not caller.is_admin:
            query = query.where(SentEmail.usuario_id == caller.require_user())
        row = await tx.scalar(query)
        if row is None:
            raise EmailNotFound("no such e-mail", metadata={"id": request.id})
        return pb.GetSentEmailResponse(email=sent_proto(row))
