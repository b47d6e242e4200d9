"""Keeping OAuth access tokens alive, for any personal connection table (Google Calendar,
Gmail, Instagram) (DESIGN "Tokens that stay alive").

- **On use:** `access_token()` hands out the stored token, or refreshes it first when it
  expires within `use_window` (15 minutes).
- **Ahead:** `refresh_due()` (run by the scheduler) refreshes every connection whose token
  expires within `ahead_window`, even when nobody uses it.
- **One at a time:** a refresh holds a transaction-scoped advisory lock on the connection, so
  replicas and concurrent calls queue up; the second one finds the token fresh and uses it.
- **Failures:** an outage counts `refresh_falhas` and blocks refreshes until
  `refresh_bloqueado_ate` (1 min, 5 min, 15 min, 1 h); after `max_failures` the connection
  goes to its final state `error` and its owner is alerted (the scheduler still tries every
  `final_cooldown`, so an outage that ends heals it). A rejected grant (`invalid_grant`) is
  final at once: `revoked` (or `expired`, as the kind decides), owner alerted.
- **Recovery:** a refresh that works on a connection marked broken restores it and
  publishes the change (alerts resolved).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.caller import Caller, Role
from server.bootstrap import Deps
from server.errors import ConnectionNotFound, DomainError
from server.observability.refreshes import record_refresh
from server.providers.errors import ProviderAuthError, ProviderError
from server.resilience.alerts import connection_broken, connection_recovered
from server.security.cipher import SecretContext
from server.tokens.errors import RefreshCoolingDown, TokenRevoked

_log = logging.getLogger(__name__)
COOLDOWNS = (
    dt.timedelta(minutes=1),
    dt.timedelta(minutes=5),
    dt.timedelta(minutes=15),
    dt.timedelta(hours=1),
)
DEAD_STATUSES = frozenset({"revoked", "expired"})


@dataclass(frozen=True)
class StoredToken:
    connection_id: uuid.UUID
    tenant_id: uuid.UUID
    owner_id: uuid.UUID
    access_token: str
    refresh_token: str | None
    expires_at: dt.datetime | None
    connected_at: dt.datetime | None


@dataclass(frozen=True)
class Refreshed:
    access_token: str
    expires_in: int
    refresh_token: str | None = None  # when the provider rotates it


# The provider call: stored token in, new token out; raises ProviderError.
RefreshFn = Callable[[Deps, StoredToken], Awaitable[Refreshed]]
# Which final status a rejected grant leaves (e.g. "expired" when it died of old age).
DeadStatusFn = Callable[[StoredToken, ProviderAuthError, dt.datetime], str]


def _revoked(_: StoredToken, __: ProviderAuthError, ___: dt.datetime) -> str:
    return "revoked"


def _invalid_grant(exc: ProviderError) -> bool:
    return isinstance(exc, ProviderAuthError) and exc.provider_code == "invalid_grant"


@dataclass(frozen=True)
class TokenKind:
    """How one table's tokens are kept. The model needs the columns `id`, `organizacao_id`,
    `usuario_id`, `access_token_encrypted`, `refresh_token_encrypted`, `token_expires_at`,
    `status`, `refresh_falhas`, `refresh_bloqueado_ate`, `ultimo_erro`, `deletado_em`."""

    connection_type: str  # ConnectionType name without prefix ("GOOGLE_CALENDAR")
    model: Any
    refresh: RefreshFn
    dead_status: DeadStatusFn = _revoked
    # Which refusal means the grant is gone for good (OAuth's invalid_grant by default).
    is_dead: Callable[[ProviderError], bool] = _invalid_grant
    # The column holding what the refresh call consumes: a refresh token, or (Instagram's
    # long-lived tokens refresh themselves) the access token.
    refresh_column: str = "refresh_token_encrypted"
    use_window: dt.timedelta = dt.timedelta(minutes=15)
    ahead_window: dt.timedelta = dt.timedelta(minutes=30)
    max_failures: int = 5
    final_cooldown: dt.timedelta = dt.timedelta(hours=6)

    @property
    def table(self) -> str:
        return str(self.model.__tablename__)

    def context(self, column: str, tenant: uuid.UUID) -> SecretContext:
        return SecretContext(table=self.table, column=column, tenant_id=tenant)


def service(tenant: uuid.UUID) -> Caller:
    return Caller(role=Role.SERVICE, tenant_id=tenant)


class TokenKeeper:
    def __init__(self, deps: Deps, kind: TokenKind) -> None:
        self._deps = deps
        self.kind = kind

    def stored(self, row: Any) -> StoredToken:
        tenant = row.organizacao_id
        decrypt = self._deps.keyring.decrypt
        column = self.kind.refresh_column
        refresh = getattr(row, column)
        return StoredToken(
            connection_id=row.id,
            tenant_id=tenant,
            owner_id=row.usuario_id,
            access_token=decrypt(
                row.access_token_encrypted, self.kind.context("access_token_encrypted", tenant)
            ),
            refresh_token=decrypt(refresh, self.kind.context(column, tenant)) if refresh else None,
            expires_at=row.token_expires_at,
            connected_at=getattr(row, "conectado_em", None),
        )

    def encrypt(self, column: str, value: str, tenant: uuid.UUID) -> str:
        return self._deps.keyring.encrypt(value, self.kind.context(column, tenant))

    def _fresh(self, row: Any, now: dt.datetime) -> bool:
        expires = row.token_expires_at
        return expires is None or expires - now > self.kind.use_window

    async def access_token(self, tenant: uuid.UUID, connection_id: uuid.UUID) -> str:
        """A usable access token: the stored one, or a fresh one when it is about to expire.

        Raises:
            TokenRevoked / TokenExpired: the connection needs its owner to reconnect.
            RefreshCoolingDown: refreshing failed lately and the token is too old to use.
            ProviderError: the refresh itself failed (retryable when it was an outage).
        """
        async with self._deps.db.unit_of_work(service(tenant)) as session:
            row = await self._row(session, connection_id)
            self._usable(row)
            if self._fresh(row, self._deps.clock.now()):
                return self.stored(row).access_token
        return await self.refresh(tenant, connection_id)

    def _usable(self, row: Any) -> None:
        if row.status in DEAD_STATUSES:
            raise TokenRevoked(f"the {self.kind.connection_type} connection must be reconnected")

    async def _row(self, session: AsyncSession, connection_id: uuid.UUID) -> Any:
        model = self.kind.model
        row = await session.scalar(
            select(model).where(model.id == connection_id, model.deletado_em.is_(None))
        )
        if row is None:
            raise ConnectionNotFound(f"{self.kind.connection_type} is not connected")
        return row

    async def refresh(
        self, tenant: uuid.UUID, connection_id: uuid.UUID, *, force: bool = False
    ) -> str:
        """Refreshes now (unless another caller just did). `force`: even when the stored
        token looks fresh (the provider answered 401 to it)."""
        failure: DomainError | None = None
        async with self._deps.db.unit_of_work(service(tenant)) as session:
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                {"k": f"token_refresh:{self.kind.table}:{connection_id}"},
            )
            row = await self._row(session, connection_id)
            self._usable(row)
            now = self._deps.clock.now()
            if not force and self._fresh(row, now) and row.status == "active":
                return self.stored(row).access_token  # refreshed while we waited for the lock
            stored = self.stored(row)
            if not stored.refresh_token:
                failure = TokenRevoked("no refresh token: the connection must be reconnected")
            elif row.refresh_bloqueado_ate is not None and row.refresh_bloqueado_ate > now:
                wait = (row.refresh_bloqueado_ate - now).total_seconds()
                failure = RefreshCoolingDown(
                    "the token refresh is cooling down after failures", retry_after=wait
                )
            else:
                try:
                    fresh = await self.kind.refresh(self._deps, stored)
                except ProviderError as exc:
                    failure = await self._failed(session, row, stored, exc, now)
                else:
                    await self._succeeded(session, row, fresh, now)
                    return fresh.access_token
        assert failure is not None
        raise failure

    async def _succeeded(
        self, session: AsyncSession, row: Any, fresh: Refreshed, now: dt.datetime
    ) -> None:
        model, tenant = self.kind.model, row.organizacao_id
        values: dict[str, Any] = {
            "access_token_encrypted": self.encrypt(
                "access_token_encrypted", fresh.access_token, tenant
            ),
            "token_expires_at": now + dt.timedelta(seconds=fresh.expires_in),
            "refresh_falhas": 0,
            "refresh_bloqueado_ate": None,
        }
        if fresh.refresh_token and self.kind.refresh_column != "access_token_encrypted":
            values[self.kind.refresh_column] = self.encrypt(
                self.kind.refresh_column, fresh.refresh_token, tenant
            )
        await session.execute(update(model).where(model.id == row.id).values(**values))
        await record_refresh(
            session,
            tenant_id=tenant,
            connection_type=self.kind.connection_type.lower(),
            connection_id=row.id,
            error=None,
        )
        if row.status != "active":
            await connection_recovered(
                session,
                model=model,
                connection_id=row.id,
                tenant_id=tenant,
                owner_id=row.usuario_id,
                connection_type=self.kind.connection_type,
                at=now,
            )

    async def _failed(
        self,
        session: AsyncSession,
        row: Any,
        stored: StoredToken,
        exc: ProviderError,
        now: dt.datetime,
    ) -> DomainError:
        model, tenant = self.kind.model, row.organizacao_id
        failures = int(row.refresh_falhas or 0) + 1
        grant_dead = self.kind.is_dead(exc)
        final = grant_dead or failures >= self.kind.max_failures
        if final:
            cooldown = self.kind.final_cooldown
        else:
            cooldown = COOLDOWNS[min(failures, len(COOLDOWNS)) - 1]
        await session.execute(
            update(model)
            .where(model.id == row.id)
            .values(refresh_falhas=failures, refresh_bloqueado_ate=now + cooldown)
        )
        await record_refresh(
            session,
            tenant_id=tenant,
            connection_type=self.kind.connection_type.lower(),
            connection_id=row.id,
            error=exc,
        )
        _log.warning("%s token refresh failed (%d): %r", self.kind.connection_type, failures, exc)
        if not final:
            return exc
        status = "error"
        if isinstance(exc, ProviderAuthError) and grant_dead:
            status = self.kind.dead_status(stored, exc, now)
        if row.status != status:
            await connection_broken(
                session,
                model=model,
                connection_id=row.id,
                tenant_id=tenant,
                owner_id=row.usuario_id,
                connection_type=self.kind.connection_type,
                error=str(exc),
                status=status,
            )
        if grant_dead:
            return TokenRevoked(f"the {self.kind.connection_type} grant was revoked or expired")
        return exc

    async def refresh_due(self) -> dict[uuid.UUID, str]:
        """Refreshes every connection whose token expires within `ahead_window` (or that sits
        in the final `error` state past its cooldown); returns connection -> outcome."""
        async with self._deps.db.system() as session:
            tenants = list((await session.execute(text("SELECT app_list_tenants()"))).scalars())
        model = self.kind.model
        outcomes: dict[uuid.UUID, str] = {}
        now = self._deps.clock.now()
        for tenant in tenants:
            async with self._deps.db.unit_of_work(service(tenant)) as session:
                due = list(
                    await session.scalars(
                        select(model.id).where(
                            model.deletado_em.is_(None),
                            model.status.in_(("active", "error")),
                            getattr(model, self.kind.refresh_column).is_not(None),
                            model.token_expires_at < now + self.kind.ahead_window,
                            (model.refresh_bloqueado_ate.is_(None))
                            | (model.refresh_bloqueado_ate <= now),
                        )
                    )
                )
            for connection_id in due:
                try:
                    await self.refresh(tenant, connection_id, force=True)
                    outcomes[connection_id] = "refreshed"
                except DomainError as exc:
                    outcomes[connection_id] = exc.reason
        return outcomes

    def schedule(self, interval_s: float) -> None:
        """Registers `refresh_due` with the scheduler (one replica at a time)."""

        async def run() -> None:
            await self.refresh_due()

        self._deps.scheduler.every(f"tokens.refresh_ahead.{self.kind.table}", interval_s, run)
