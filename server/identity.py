"""Callers named in verified tokens: just-in-time identity and admin-granted permissions."""

from __future__ import annotations

import json
import uuid

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
        """Read fresh on every check, so a revoked grant takes effect at once (one round
        trip: the read runs as the caller in a statement of its own, Database.fetchrow_as)."""
        if caller.user_id is None:
            return frozenset()
        found = await self._db.fetchrow_as(caller, _GRANTS_CALL)
        granted = found["granted"] if found is not None else None
        if isinstance(granted, str):  # a connection without the JSON codec answers text
            granted = json.loads(granted)
        if not isinstance(granted, dict):
            return frozenset()
        return frozenset(k for k, v in granted.items() if v is True and k in GRANTABLE)


_GRANTS_CALL = "SELECT as_caller_member_grants($1, $2, $3) AS granted"
