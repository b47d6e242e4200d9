"""In-memory state of the Google fake: the consenting account, grants and tokens, calendars,
events with a change sequence (for sync tokens), conferences and push channels."""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.google.settings import GoogleSettings

_B32HEX = string.digits + "abcdefghijklmnopqrstuv"


def event_id() -> str:
    return "".join(secrets.choice(_B32HEX) for _ in range(26))


@dataclass
class Account:
    id: str = "109876543210987654321"
    email: str = "joao.silva@gmail.com"
    name: str = "Joao Silva"
    meet_allowed: bool = True


@dataclass
class Pending:
    """A consent screen shown, waiting for approve/deny."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str
    challenge: str | None
    account: Account


@dataclass
class Code:
    pending: Pending
    expires_at: float
    used: bool = False


@dataclass
class Grant:
    account: Account
    scopes: tuple[str, ...]
    refresh_token: str
    created_at: float
    revoked: bool = False
    refreshes: int = 0


@dataclass
class Channel:
    id: str
    resource_id: str
    calendar_id: str
    address: str
    token: str | None
    expiration_ms: int
    message_number: int = 1
    stopped: bool = False


@dataclass
class Calendar:
    id: str
    summary: str
    access_role: str
    primary: bool = False
    time_zone: str = "America/Sao_Paulo"
    color: str = "#9fe1e7"
    events: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class GoogleState:
    settings: GoogleSettings
    clock: Callable[[], float] = time.time
    account: Account = field(default_factory=Account)
    pending: dict[str, Pending] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    access: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> grant, expiry
    refresh: dict[str, str] = field(default_factory=dict)  # refresh token -> grant id
    calendars: dict[str, dict[str, Calendar]] = field(default_factory=dict)  # per account id
    channels: dict[str, Channel] = field(default_factory=dict)
    sequence: int = 0  # every event change bumps it; a sync token remembers where it stood
    sync_tokens: dict[str, tuple[str, int]] = field(default_factory=dict)
    conference_reads: dict[str, int] = field(default_factory=dict)
    # Statuses the token endpoint answers next (an outage at Google), consumed one per call.
    token_failures: list[int] = field(default_factory=list)
    # Calls seen, for tests that check what a client sent (method, path, query).
    calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def calendars_of(self, account: Account) -> dict[str, Calendar]:
        if account.id not in self.calendars:
            self.calendars[account.id] = {
                account.email: Calendar(account.email, account.email, "owner", primary=True),
                "vendas@group.calendar.google.com": Calendar(
                    "vendas@group.calendar.google.com", "Vendas", "writer", color="#f83a22"
                ),
                "feriados@group.v.calendar.google.com": Calendar(
                    "feriados@group.v.calendar.google.com", "Feriados no Brasil", "reader"
                ),
            }
        return self.calendars[account.id]

    def issue_tokens(self, grant_id: str) -> dict[str, Any]:
        token = "ya29.sandbox-" + secrets.token_urlsafe(24)
        self.access[token] = (grant_id, self.clock() + self.settings.access_token_ttl)
        grant = self.grants[grant_id]
        return {
            "access_token": token,
            "expires_in": self.settings.access_token_ttl,
            "token_type": "Bearer",
            "scope": " ".join(grant.scopes),
        }

    def grant_of_access(self, token: str) -> Grant | None:
        found = self.access.get(token)
        if found is None or found[1] <= self.clock():
            return None
        grant = self.grants.get(found[0])
        return None if grant is None or grant.revoked else grant

    def bump(self) -> int:
        self.sequence += 1
        return self.sequence

    def new_sync_token(self, calendar_id: str) -> str:
        token = "CPDAlvWDx" + secrets.token_urlsafe(12)
        self.sync_tokens[token] = (calendar_id, self.sequence)
        return token
