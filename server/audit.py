"""The audit log: written in the same unit of work as the change it records."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditEntry
from server.auth.caller import Caller

_SECRET_KEY = re.compile(r"(?i)token|secret|password|api_?key|hmac|verifier|authorization")
_UNSET: Any = object()


def scrub(details: Mapping[str, Any]) -> dict[str, Any]:
    """Drops values whose key names a secret, recursively: audit entries never hold one."""
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if _SECRET_KEY.search(key) and not key.endswith(("_set", "_expires_at")):
            clean[key] = "[redacted]"
        elif isinstance(value, Mapping):
            clean[key] = scrub(value)
        else:
            clean[key] = value
    return clean


async def record_audit(
    session: AsyncSession,
    caller: Caller,
    action: str,
    *,
    entity_type: str | None = None,
    entity_id: str | uuid.UUID | None = None,
    details: Mapping[str, Any] | None = None,
    tenant_id: uuid.UUID | None = _UNSET,
) -> None:
    """Adds an audit row; ``tenant_id=None`` makes it a platform-level entry."""
    session.add(
        AuditEntry(
            organizacao_id=caller.tenant_id if tenant_id is _UNSET else tenant_id,
            usuario_id=caller.user_id,
            actor_role=caller.role.value,
            action=action,
            entity_type=entity_type,
            entity_id=str(entity_id) if entity_id is not None else None,
            details=scrub(details or {}),
        )
    )
