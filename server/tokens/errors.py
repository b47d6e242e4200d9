"""Why a stored token cannot be used (reasons are API)."""

from __future__ import annotations

from server.errors import TokenExpired, Unavailable


class TokenRevoked(TokenExpired):
    """The grant is gone (revoked by the user, or expired for good): reconnect."""

    reason = "TOKEN_REVOKED"


class RefreshCoolingDown(Unavailable):
    """The last refreshes failed; the next try waits for the cooldown (retry_after)."""

    reason = "TOKEN_REFRESH_COOLDOWN"
