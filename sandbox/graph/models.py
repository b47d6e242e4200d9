"""The Graph fake's objects: users, pages, forms, leads, tokens and authorization codes."""

from __future__ import annotations

import datetime as dt
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

# Scopes the Lead Ads flow asks for (docs/providers.md, Meta Lead Ads); granular ones name pages.
PAGE_SCOPES = (
    "pages_show_list",
    "pages_read_engagement",
    "pages_manage_metadata",
    "pages_manage_ads",
    "leads_retrieval",
)
TASKS = ["ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"]


def graph_time(epoch: int) -> str:
    """Graph's `YYYY-MM-DDTHH:MM:SS+0000` (no colon in the offset)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def new_object_id(rng: random.Random, digits: int = 16) -> str:
    return str(rng.randrange(10 ** (digits - 1), 10**digits))


def new_lead_id(rng: random.Random) -> str:
    # Leadgen ids are larger than 2^53 (9007199254740992): a float would corrupt them.
    return str(rng.randrange(2**53 + 1, 9 * 10**18))


def new_token() -> str:
    return "EAAB" + secrets.token_urlsafe(48).replace("-", "x").replace("_", "y")


@dataclass
class SandboxUser:
    id: str
    name: str
    email: str
    page_ids: list[str] = field(default_factory=list)


@dataclass
class Question:
    key: str
    label: str
    type: str  # FULL_NAME, EMAIL, PHONE, COMPANY_NAME, JOB_TITLE, CITY, CUSTOM ...
    id: str

    def to_json(self) -> JSON:
        return {"key": self.key, "label": self.label, "type": self.type, "id": self.id}


@dataclass
class Form:
    id: str
    page_id: str
    name: str
    questions: list[Question]
    status: str = "ACTIVE"
    locale: str = "pt_BR"
    created_time: int = 1_700_000_000


@dataclass
class Page:
    id: str
    name: str
    category: str = "Empresa de consultoria"
    form_ids: list[str] = field(default_factory=list)
    # app id -> subscribed fields (POST /{page-id}/subscribed_apps)
    subscriptions: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Lead:
    id: str
    form_id: str
    page_id: str
    created_time: int
    field_data: list[JSON]
    ad_id: str | None = None
    is_organic: bool = False
    platform: str = "fb"

    def to_json(self, fields: list[str] | None = None) -> JSON:
        full: JSON = {
            "id": self.id,
            "created_time": graph_time(self.created_time),
            "form_id": self.form_id,
            "field_data": self.field_data,
            "is_organic": self.is_organic,
            "platform": self.platform,
        }
        if self.ad_id:
            full.update(ad_id=self.ad_id, ad_name="Anuncio sandbox", adset_id="0", campaign_id="0")
        if not fields:
            return {k: full[k] for k in ("id", "created_time", "field_data") if k in full}
        return {k: v for k, v in full.items() if k in fields or k == "id"}


@dataclass
class Token:
    value: str
    kind: str  # "user" or "page"
    user_id: str
    app_id: str
    issued_at: int
    expires_at: int  # 0 = never (page tokens from a long-lived user token)
    scopes: list[str]
    granted_page_ids: list[str]
    page_id: str | None = None
    long_lived: bool = False
    dead_subcode: int | None = None
    dead_detail: str = ""


@dataclass
class AuthCode:
    value: str
    user_id: str
    client_id: str
    redirect_uri: str
    scopes: list[str]
    granted_page_ids: list[str]
    expires_at: int
    used: bool = False


@dataclass
class DialogPlan:
    """What the next Facebook Login dialog does (the person's side, set by control)."""

    deny: bool = False
    user_id: str | None = None
    granted_page_ids: list[str] | None = None  # None = every page of the user
    declined_scopes: list[str] = field(default_factory=list)


@dataclass
class Fault:
    """Answer the next `times` Graph requests whose path matches with an error."""

    pattern: str
    kind: str  # server_error | rate_limit | token_expired | graph_error
    times: int = 1
    method: str | None = None
    code: int | None = None
    status: int | None = None
    subcode: int | None = None
    hits: int = 0
    skip: int = 0  # matching requests let through first
    hang_s: float = 0.0  # real seconds before the error is answered (a call that times out)
