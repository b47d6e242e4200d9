"""The sidecar's own identity towards the gRPC server: a short-lived service token.

Minted with the service key (CONEXOES_SERVICE_TOKEN_SECRET, or the development one when no key
is configured), which the user-token key cannot stand in for: whoever can mint user tokens still
cannot mint this identity. Re-minted shortly before it expires, so a long-running sidecar never
presents an expired token and a leaked one is useful for an hour at most.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import jwt

from webhooks_http.observability import request_metadata
from webhooks_http.settings import SidecarConfig

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
        self._authorization = ("authorization", "")
        self._expires_at = self._now()
        self._mint(self._expires_at)  # at start: a bad secret shows before the first webhook

    @classmethod
    def from_settings(cls, settings: SidecarConfig) -> ServiceIdentity:
        secret = settings.effective_service_secret
        if not secret:
            raise ValueError(
                "the sidecar needs CONEXOES_SERVICE_TOKEN_SECRET to mint its service token"
            )
        return cls(secret)

    def metadata(self) -> Metadata:
        now = self._now()
        if now >= self._expires_at - self._margin:
            self._mint(now)
        return (self._authorization, *request_metadata())

    def _mint(self, now: datetime) -> None:
        # The server's token contract (README, "Who may call what"): role "service", no
        # tenant or user; the tenant comes from the server's own records.
        claims = {"role": "service", "iat": now, "exp": now + self._ttl}
        self._token = jwt.encode(claims, self._secret, algorithm="HS256")
        # Built once per token, not per forwarded request.
        self._authorization = ("authorization", f"Bearer {self._token}")
        self._expires_at = now + self._ttl
