"""Super-admin platform credentials (Meta App, Google App, Instagram App, WAHA, the mailer).

Stored values override the deployment's environment defaults (``CONEXOES_META_APP_ID`` ...).
Secrets are encrypted at rest and never leave the server: readers outside the server only
learn whether each secret is set.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import PlatformCredential
from db.uow import Database
from server.errors import FailedPrecondition, InvalidArgument
from server.security.cipher import DecryptionError, Keyring, SecretContext
from server.settings import Settings


@dataclass(frozen=True)
class CredentialField:
    key: str
    secret: bool = False


# Provider -> its fields. Data, not code: a new platform credential is one line here.
CATALOG: dict[str, tuple[CredentialField, ...]] = {
    "meta": (
        CredentialField("app_id"),
        CredentialField("app_secret", secret=True),
        CredentialField("verify_token", secret=True),
        CredentialField("graph_api_version"),
    ),
    "google": (CredentialField("client_id"), CredentialField("client_secret", secret=True)),
    "instagram": (CredentialField("app_id"), CredentialField("app_secret", secret=True)),
    "waha": (
        CredentialField("base_url"),
        CredentialField("api_key", secret=True),
        CredentialField("webhook_hmac_key", secret=True),
    ),
    # The SMTP account alerts are e-mailed from; super_admin_emails is comma-separated.
    "mailer": (
        CredentialField("host"),
        CredentialField("port"),
        CredentialField("username"),
        CredentialField("password", secret=True),
        CredentialField("from_address"),
        CredentialField("super_admin_emails"),
    ),
}


@dataclass(frozen=True)
class CredentialView:
    """What a super admin may read back: plain values and whether each secret is set."""

    provider: str
    values: Mapping[str, str]
    secrets_set: Mapping[str, bool]
    updated_at: datetime | None
    updated_by: object | None
    stored: bool
    from_environment: bool


def _context(provider: str, key: str) -> SecretContext:
    return SecretContext("platform_credentials", f"{provider}.{key}", None)


def _field(provider: str, key: str) -> CredentialField:
    for f in CATALOG.get(provider, ()):
        if f.key == key:
            return f
    raise InvalidArgument.field(key, f"not a credential of provider '{provider}'")


class PlatformCredentials:
    # Hot paths (every webhook, every WAHA call) read these; a super admin's change reaches
    # other processes within this many seconds, this process at once.
    CACHE_SECONDS = 5.0

    def __init__(self, settings: Settings, keyring: Keyring) -> None:
        self._keyring = keyring
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}
        self._defaults = dict(settings.platform_defaults)
        self._explicit_defaults = frozenset(settings.platform_defaults)
        self._defaults.setdefault("waha.base_url", settings.waha_url)
        self._defaults.setdefault("meta.graph_api_version", settings.meta_graph_version)

    async def resolve(self, session: AsyncSession, provider: str) -> dict[str, str]:
        """Every field of ``provider`` in plain text, stored values over defaults (server use)."""
        if provider not in CATALOG:
            raise InvalidArgument.field("provider", f"unknown provider '{provider}'")
        values = {
            f.key: self._defaults[f"{provider}.{f.key}"]
            for f in CATALOG[provider]
            if f"{provider}.{f.key}" in self._defaults
        }
        for row in await self._rows(session, provider):
            if row.value_encrypted is None:
                values[row.key] = row.value_plain or ""
                continue
            try:
                values[row.key] = self._keyring.decrypt(
                    row.value_encrypted, _context(provider, row.key)
                )
            except DecryptionError as exc:
                # A key was removed from CONEXOES_ENCRYPTION_KEYS: an operator must act.
                raise FailedPrecondition(
                    f"stored {provider}.{row.key} cannot be decrypted with the configured keys;"
                    " restore the key or set the credential again",
                    metadata={"provider": provider, "key": row.key},
                ) from exc
        return values

    async def current(self, db: Database, provider: str) -> dict[str, str]:
        """Like `resolve`, in a transaction of its own, cached for CACHE_SECONDS."""
        now = time.monotonic()
        cached = self._cache.get(provider)
        if cached is not None and cached[0] > now:
            return dict(cached[1])
        async with db.system() as session:
            values = await self.resolve(session, provider)
        self._cache[provider] = (now + self.CACHE_SECONDS, values)
        return dict(values)

    async def view(self, session: AsyncSession, provider: str) -> CredentialView:
        resolved = await self.resolve(session, provider)
        rows = await self._rows(session, provider)
        secret_keys = {f.key for f in CATALOG[provider] if f.secret}
        latest = max(rows, key=lambda r: r.updated_at, default=None)
        return CredentialView(
            provider=provider,
            values={k: v for k, v in resolved.items() if k not in secret_keys},
            secrets_set={k: bool(resolved.get(k)) for k in sorted(secret_keys)},
            updated_at=latest.updated_at if latest else None,
            updated_by=latest.updated_by if latest else None,
            stored=bool(rows),
            from_environment=any(
                f"{provider}.{f.key}" in self._defaults for f in CATALOG[provider] if f.secret
            )
            or any(k.startswith(f"{provider}.") for k in self._explicit_defaults),
        )

    async def update(
        self,
        session: AsyncSession,
        provider: str,
        changes: Mapping[str, str],
        *,
        updated_by: object,
    ) -> list[str]:
        """Stores ``changes`` (an empty value clears the stored override). Returns keys changed."""
        if provider not in CATALOG:
            raise InvalidArgument.field("provider", f"unknown provider '{provider}'")
        self._cache.pop(provider, None)
        for key, value in changes.items():
            field = _field(provider, key)
            if not value:
                await session.execute(
                    delete(PlatformCredential).where(
                        PlatformCredential.provider == provider, PlatformCredential.key == key
                    )
                )
                continue
            row = {
                "provider": provider,
                "key": key,
                "value_encrypted": (
                    self._keyring.encrypt(value, _context(provider, key)) if field.secret else None
                ),
                "value_plain": None if field.secret else value,
                "updated_by": updated_by,
            }
            stmt = insert(PlatformCredential).values(**row)
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["provider", "key"],
                    set_={
                        "value_encrypted": stmt.excluded.value_encrypted,
                        "value_plain": stmt.excluded.value_plain,
                        "updated_by": stmt.excluded.updated_by,
                        "updated_at": stmt.excluded.updated_at,
                    },
                )
            )
        return sorted(changes)

    async def _rows(self, session: AsyncSession, provider: str) -> list[PlatformCredential]:
        result = await session.scalars(
            select(PlatformCredential).where(PlatformCredential.provider == provider)
        )
        return list(result)
