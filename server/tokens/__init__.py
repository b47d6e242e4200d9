"""OAuth token upkeep shared by the personal connections (Google Calendar, Gmail, Instagram)."""

from server.tokens.errors import RefreshCoolingDown, TokenRevoked
from server.tokens.keeper import (
    COOLDOWNS,
    Refreshed,
    StoredToken,
    TokenKeeper,
    TokenKind,
)

__all__ = [
    "COOLDOWNS",
    "RefreshCoolingDown",
    "Refreshed",
    "StoredToken",
    "TokenKeeper",
    "TokenKind",
    "TokenRevoked",
]
