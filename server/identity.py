"""Callers named in verified tokens: just-in-time identity and admin-granted permissions."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from db.models import User
from db.uow import Database
from server.auth.caller import GRANTABLE, Caller


class Identities:
    """Creates organizations and users on first sight, and reads a member's grants."""

    def __init__(self, db: Database, *, cache_size: int = 10_000) -> None:
        self._db = db
        self._seen: set[tuple[uuid.UUID, uuid.UUID | None]] = set()
        self._cache_size = cache_size

    async def ensure(self, caller: Caller) -> None:
        # A service token naming a tenant is the CRM core: its tenant exists from then on.
        if caller.tenant_id is None:
            return
        key = (caller.tenant_id, caller.user_id)
        if key in self._seen:
            return
        await self._db.ensure_identity(caller)
        if len(self._seen) >= self._cache_size:
            self._seen.clear()
        self._seen.add(key)

    async def grants(self, caller: Caller) -> frozenset[str]:
        """Read fresh on every check, so a revoked grant takes effect at once."""
        if caller.user_id is None:
            return frozenset()
        async with self._db.unit_of_work(caller) as session:
            granted = await session.scalar(
                select(User.permissoes_conexoes).where(User.id == caller.user_id)
            )
        return frozenset(k for k, v in (granted or {}).items() if v is True and k in GRANTABLE)
