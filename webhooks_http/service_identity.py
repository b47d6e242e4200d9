"""The sidecar's own identity towards the gRPC server: a short-lived service token.

Minted from the shared HS256 secret (CONEXOES_JWT_SECRET, or the development secret when no key
is configured), re-minted shortly before it expires, so a long-running sidecar never presents an
expired token and a leaked one is useful for an hour at most.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from server.auth.caller import Role
from server.auth.tokens import mint_token
from server.settings import Settings

Metadata = tuple[tuple[str, str], ...]


class ServiceIdentity:
    """Bearer metadata for internal RPCs, refreshed before expiry."""

    def __init__(
        self,
        secret: str,
        *,
        ttl: timedelta = timedelta(hours=1),
        refresh_margin: timedelta = timedelta(minutes=5),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if refresh_margin >= ttl:
            raise ValueError("refresh_margin must be shorter than ttl")
        self._secret = secret
        self._ttl = ttl
        self._margin = refresh_margin
        self._now = now
        self._token = ""
        self._expires_at = self._now()
        self._mint(self._expires_at)  # at start: a bad secret shows before the first webhook

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceIdentity:
        secret = settings.effective_jwt_secret
        if not secret:
            # RS256-only deployments verify with a public key; the sidecar cannot sign with it.
            raise ValueError("the sidecar needs CONEXOES_JWT_SECRET to mint its service token")
        return cls(secret)

    def metadata(self) -> Metadata:
        now = self._now()
        if now >= self._expires_at - self._margin:
            self._mint(now)
        return (("authorization", f"Bearer {self._token}"),)

    def _mint(self, now: datetime) -> None:
        self._token = mint_token(self._secret, role=Role.SERVICE, ttl=self._ttl, now=now)
        self._expires_at = now + self._ttl
