"""Who is calling: the verified identity every unit of work runs as."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field


class Role(enum.StrEnum):
    SUPER_ADMIN = "super_admin"
    ADMIN = "admin"
    MEMBER = "member"
    # The sidecar and workers: internal RPCs only, tenant resolved from our own records.
    SERVICE = "service"


# Member permissions an admin may grant (usuarios.permissoes_conexoes keys).
GRANTABLE = frozenset({"meta_lead_ads", "instagram_direct"})


@dataclass(frozen=True)
class Caller:
    role: Role
    tenant_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    grants: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return self.role in (Role.ADMIN, Role.SUPER_ADMIN)

    def require_tenant(self) -> uuid.UUID:
        if self.tenant_id is None:
            from server.errors import FailedPrecondition

            raise FailedPrecondition("this call needs a tenant (claim 'org')")
        return self.tenant_id

    def require_user(self) -> uuid.UUID:
        if self.user_id is None:
            from server.errors import FailedPrecondition

            raise FailedPrecondition("this call needs a user (claim 'sub')")
        return self.user_id
