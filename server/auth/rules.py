"""Permission rules: who may call an RPC. The table of RPC -> rule lives in permissions.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server.auth.caller import GRANTABLE, Caller, Role
from server.errors import PermissionNotGranted

GrantLookup = Callable[[Caller], Awaitable[frozenset[str]]]

_TENANT_ROLES = frozenset({Role.SUPER_ADMIN, Role.ADMIN, Role.MEMBER})


@dataclass(frozen=True)
class Rule:
    """Roles allowed outright, plus a grant that lets a member in.

    Tenant rules also need a tenant in the token: a platform-only super admin token has none.
    "Own connection only" for members is not a rule here: row-level security and the services
    scope every personal connection to the caller.
    """

    roles: frozenset[Role]
    member_grant: str | None = None
    needs_tenant: bool = True
    label: str = ""

    async def check(self, caller: Caller, grants: GrantLookup) -> None:
        allowed = caller.role in self.roles
        if not allowed and self.member_grant and caller.role is Role.MEMBER:
            if self.member_grant not in await grants(caller):
                raise PermissionNotGranted(
                    f"an admin must grant '{self.member_grant}' to this member",
                    metadata={"permission": f"conexao.{self.member_grant}"},
                )
            allowed = True
        if not allowed:
            raise PermissionNotGranted(
                f"role '{caller.role.value}' may not call this ({self.label})"
            )
        if self.needs_tenant and caller.role is not Role.SERVICE and caller.tenant_id is None:
            raise PermissionNotGranted("this call acts on a tenant; the token names none ('org')")

    @staticmethod
    def deny_unlisted(method: str) -> Rule:
        return Rule(frozenset(), label=f"{method} has no permission rule")


# Personal connections: every tenant user, each on their own connection.
ANY_USER = Rule(_TENANT_ROLES, label="any tenant user")
ADMIN = Rule(frozenset({Role.SUPER_ADMIN, Role.ADMIN}), label="tenant admin")
SUPER_ADMIN = Rule(frozenset({Role.SUPER_ADMIN}), needs_tenant=False, label="super admin")
# The sidecar's own identity: webhooks and OAuth redirects, tenant resolved from our records.
SERVICE = Rule(frozenset({Role.SERVICE}), label="internal service")
ADMIN_OR_SERVICE = Rule(frozenset({Role.SUPER_ADMIN, Role.ADMIN, Role.SERVICE}), label="admin")


def granted(permission: str) -> Rule:
    if permission not in GRANTABLE:
        raise ValueError(f"{permission!r} is not a grantable member permission")
    return Rule(
        frozenset({Role.SUPER_ADMIN, Role.ADMIN}), member_grant=permission, label=permission
    )
