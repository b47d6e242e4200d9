"""Unsigned and badly signed webhooks, counted per source address and minute.

Anyone can post garbage at a public webhook route: auditing each attempt would let a flood of
forged requests flood `audit_log`. Each attempt increments the counters of its source and
minute in `webhook_rejeicoes`; only the first of a source's minute writes an audit entry
(which points at the counters). Nothing of the body or its signature is kept.
"""

from __future__ import annotations

from typing import Any

from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb
from sqlalchemy import text

from db.uow import Database
from server.audit import record_audit
from server.auth.caller import Caller, Role
from server.ingress.signatures import Check

_SERVICE = Caller(role=Role.SERVICE)
_MAX_SOURCE = 64
ACTION = "webhook.rejected"

# xmax = 0 only on a freshly inserted row: the first rejection of this source and minute.
_COUNT = text(
    """
    INSERT INTO webhook_rejeicoes (origem, minuto, sem_assinatura, assinatura_invalida)
    VALUES (:origem, date_trunc('minute', now()), :missing, :invalid)
    ON CONFLICT (origem, minuto) DO UPDATE SET
      sem_assinatura = webhook_rejeicoes.sem_assinatura + EXCLUDED.sem_assinatura,
      assinatura_invalida = webhook_rejeicoes.assinatura_invalida + EXCLUDED.assinatura_invalida,
      ultima_em = now()
    RETURNING xmax = 0 AS first, minuto
    """
)


def source_of(remote_addr: str) -> str:
    """The client address without its port ("203.0.113.7:4321", "[2001:db8::1]:443")."""
    host = remote_addr.rpartition(":")[0] if remote_addr.count(":") == 1 else remote_addr
    if remote_addr.startswith("[") and "]" in remote_addr:
        host = remote_addr[1 : remote_addr.index("]")]
    return (host or "unknown")[:_MAX_SOURCE]


async def record_rejection(
    db: Database, provider: str, request: pb.RawHttpRequest, check: Check
) -> bool:
    """Counts one refused delivery; audits it when it is its source's first this minute.
    Returns whether an audit entry was written."""
    source = source_of(request.remote_addr)
    missing = int(check is Check.MISSING)
    async with db.unit_of_work(_SERVICE) as session:
        row = (
            await session.execute(
                _COUNT, {"origem": source, "missing": missing, "invalid": 1 - missing}
            )
        ).one()
        if not row.first:
            return False
        details: dict[str, Any] = {
            "provider": provider,
            "path": request.path,
            "remote_addr": request.remote_addr,
            "reason": check.value,
            # Later refusals of this source and minute are only counted.
            "aggregated": {"table": "webhook_rejeicoes", "origem": source,
                           "minuto": row.minuto.isoformat()},
        }  # fmt: skip
        await record_audit(
            session,
            _SERVICE,
            ACTION,
            entity_type="webhook",
            entity_id=provider,
            details=details,
            tenant_id=None,
        )
    return True
