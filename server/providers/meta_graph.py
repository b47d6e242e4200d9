"""Meta Graph API client for Facebook Login and Lead Ads (docs/providers.md, Meta Graph).

One pinned Graph version (configuration), every Meta id kept as a string (leadgen ids exceed
2^53; Python's `json` keeps big integers exact and `_id` turns them into text at once), list
edges followed through `paging.next`, and every failure translated once into a ProviderError
(`translate_errors("meta_graph")`: Graph 190 -> ProviderAuthError, 4/17/32/613 -> rate limited,
5xx -> server error). Tokens travel in the Authorization header, never in logged URLs.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from server.providers.errors import ProviderRejected
from server.providers.http import raise_for_provider_response, translate_errors

PROVIDER = "meta_graph"
# docs/providers.md, Meta Lead Ads: what the Lead Ads flow needs.
LEAD_ADS_SCOPES: tuple[str, ...] = (
    "pages_show_list",
    "pages_read_engagement",
    "pages_manage_metadata",
    "pages_manage_ads",
    "leads_retrieval",
    "ads_management",
    "email",  # the connecting person's address, shown as meta_user_email
)
LEAD_FIELDS = "id,created_time,ad_id,form_id,field_data,is_organic,platform"
FORM_FIELDS = "id,name,status,locale,created_time,leads_count,questions"
# A runaway `paging.next` chain must end: 100 pages of 100 items is far past any real account.
_MAX_PAGES = 100

Guard = Callable[[], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_in: int | None


@dataclass(frozen=True)
class MetaUser:
    id: str
    name: str
    email: str | None


@dataclass(frozen=True)
class PageAccount:
    id: str
    name: str
    category: str
    access_token: str
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class TokenInfo:
    """`debug_token`'s answer: validity and which targets (pages) each scope covers."""

    is_valid: bool
    app_id: str
    type: str
    user_id: str | None
    expires_at: dt.datetime | None
    scopes: tuple[str, ...]
    targets: Mapping[str, tuple[str, ...]]
    error_code: int | None = None
    error_subcode: int | None = None

    def granted(self, scope: str, page_id: str) -> bool:
        """True when `scope` was granted and (for page scopes) covers `page_id`."""
        if scope not in self.scopes:
            return False
        targets = self.targets.get(scope)
        return targets is None or page_id in targets


@dataclass(frozen=True)
class FormQuestion:
    key: str
    label: str
    type: str


@dataclass(frozen=True)
class LeadForm:
    id: str
    name: str
    status: str
    locale: str
    leads_count: int
    created_time: dt.datetime | None
    questions: tuple[FormQuestion, ...]


@dataclass(frozen=True)
class LeadData:
    id: str
    form_id: str
    created_time: dt.datetime | None
    ad_id: str | None
    field_data: Mapping[str, tuple[str, ...]]


def _id(value: object) -> str:
    return "" if value is None else str(value)


def parse_graph_time(value: object) -> dt.datetime | None:
    """Graph writes `2015-02-28T08:49:14+0000` (no colon); webhooks send Unix seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    text = str(value)
    if text.isdigit():
        return dt.datetime.fromtimestamp(int(text), dt.UTC)
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return dt.datetime.strptime(text, fmt).astimezone(dt.UTC)
        except ValueError:
            continue
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def dialog_url(
    oauth_base: str,
    version: str,
    *,
    app_id: str,
    redirect_uri: str,
    state: str,
    scopes: tuple[str, ...] = LEAD_ADS_SCOPES,
) -> str:
    """The Facebook Login dialog URL (docs/providers.md, Meta Lead Ads).
    https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow
    """
    query = urlencode(
        {
            "client_id": app_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "response_type": "code",
            "scope": ",".join(scopes),
        }
    )
    return f"{oauth_base.rstrip('/')}/{version}/dialog/oauth?{query}"


@asynccontextmanager
async def _no_guard() -> AsyncIterator[None]:
    yield


class MetaGraphClient:
    """Graph calls for Lead Ads. `guard` is the meta_graph circuit breaker's context."""

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, version: str, *, guard: Guard | None = None
    ) -> None:
        self._http = http
        self._base = f"{base_url.rstrip('/')}/{version}"
        self._host = urlsplit(base_url).netloc
        self._guard = guard or _no_guard
        self.version = version

    async def _call(
        self,
        method: str,
        path_or_url: str,
        *,
        token: str | None = None,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        url = path_or_url if "://" in path_or_url else f"{self._base}{path_or_url}"
        headers = {"authorization": f"Bearer {token}"} if token else {}
        async with self._guard(), translate_errors(PROVIDER):
            response = await self._http.request(
                method, url, params=params, data=dict(form) if form else None, headers=headers
            )
            raise_for_provider_response(PROVIDER, response)
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise ProviderRejected("answer is not JSON", provider=PROVIDER) from exc
        if not isinstance(body, dict):
            raise ProviderRejected("answer is not a JSON object", provider=PROVIDER)
        return body

    async def _edge(
        self, path: str, *, token: str, params: Mapping[str, str]
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list edge, following `paging.next` on the same host only (the
        next URL carries the token in its query)."""
        body = await self._call("GET", path, token=token, params=params)
        for _ in range(_MAX_PAGES):
            for item in body.get("data") or []:
                if isinstance(item, dict):
                    yield item
            nxt = (body.get("paging") or {}).get("next")
            if not nxt or urlsplit(nxt).netloc != self._host:
                return
            body = await self._call("GET", nxt, token=token)

    # -- OAuth (docs/providers.md, Meta Lead Ads) --------------------------------------------------

    async def exchange_code(
        self, *, app_id: str, app_secret: str, redirect_uri: str, code: str
    ) -> TokenGrant:
        # POST with a form body (Graph takes parameters either way): the app secret and the
        # code stay out of URLs, which proxies and access logs record.
        body = await self._call(
            "POST",
            "/oauth/access_token",
            form={
                "client_id": app_id,
                "client_secret": app_secret,
                "redirect_uri": redirect_uri,
                "code": code,
            },
        )
        return _grant(body)

    async def exchange_long_lived(self, *, app_id: str, app_secret: str, token: str) -> TokenGrant:
        body = await self._call(
            "POST",
            "/oauth/access_token",
            form={
                "grant_type": "fb_exchange_token",
                "client_id": app_id,
                "client_secret": app_secret,
                "fb_exchange_token": token,
            },
        )
        return _grant(body)

    async def revoke_permissions(self, token: str) -> None:
        """Removes every permission the person granted the app (the app is uninstalled for
        them; their tokens die). https://developers.facebook.com/docs/facebook-login/guides/permissions/request-revoke"""
        await self._call("DELETE", "/me/permissions", token=token)

    async def me(self, token: str) -> MetaUser:
        body = await self._call("GET", "/me", token=token, params={"fields": "id,name,email"})
        return MetaUser(_id(body.get("id")), str(body.get("name") or ""), body.get("email"))

    async def debug_token(self, input_token: str, *, app_id: str, app_secret: str) -> TokenInfo:
        """https://developers.facebook.com/docs/graph-api/reference/debug_token"""
        body = await self._call(
            "GET",
            "/debug_token",
            token=f"{app_id}|{app_secret}",
            params={"input_token": input_token},
        )
        data = body.get("data") or {}
        error = data.get("error") or {}
        expires = data.get("expires_at")
        return TokenInfo(
            is_valid=bool(data.get("is_valid")),
            app_id=_id(data.get("app_id")),
            type=str(data.get("type") or ""),
            user_id=_id(data.get("user_id")) or None,
            expires_at=parse_graph_time(expires) if expires else None,
            scopes=tuple(str(s) for s in data.get("scopes") or ()),
            targets={
                str(g["scope"]): tuple(_id(t) for t in g["target_ids"])
                for g in data.get("granular_scopes") or ()
                if isinstance(g, dict) and "target_ids" in g
            },
            error_code=error.get("code"),
            error_subcode=error.get("subcode"),
        )

    # -- pages (docs/providers.md, Meta Lead Ads) ---------------------------------------------

    async def accounts(self, token: str) -> list[PageAccount]:
        params = {"fields": "id,name,access_token,tasks,category", "limit": "100"}
        return [
            PageAccount(
                id=_id(item.get("id")),
                name=str(item.get("name") or ""),
                category=str(item.get("category") or ""),
                access_token=str(item.get("access_token") or ""),
                tasks=tuple(str(t) for t in item.get("tasks") or ()),
            )
            async for item in self._edge("/me/accounts", token=token, params=params)
        ]

    async def subscribe_leadgen(self, page_id: str, page_token: str) -> bool:
        """https://developers.facebook.com/docs/graph-api/reference/page/subscribed_apps
        Meta's sample answers `"true"` as a string: both spellings count."""
        body = await self._call(
            "POST",
            f"/{page_id}/subscribed_apps",
            token=page_token,
            params={"subscribed_fields": "leadgen"},
        )
        return body.get("success") in (True, "true")

    async def unsubscribe(self, page_id: str, page_token: str) -> None:
        await self._call("DELETE", f"/{page_id}/subscribed_apps", token=page_token)

    # -- Lead Ads (docs/providers.md, Meta Lead Ads) -----------------------------------------------

    async def leadgen_forms(self, page_id: str, page_token: str) -> list[LeadForm]:
        """https://developers.facebook.com/docs/marketing-api/reference/page/leadgen_forms"""
        params = {"fields": FORM_FIELDS, "limit": "100"}
        return [
            _form(item)
            async for item in self._edge(
                f"/{page_id}/leadgen_forms", token=page_token, params=params
            )
        ]

    async def get_lead(self, lead_id: str, page_token: str) -> LeadData:
        """https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving"""
        body = await self._call(
            "GET", f"/{lead_id}", token=page_token, params={"fields": LEAD_FIELDS}
        )
        return _lead(body)

    async def form_leads(
        self, form_id: str, page_token: str, *, since: dt.datetime | None
    ) -> list[LeadData]:
        """The form's leads created after `since` (bulk read, docs/providers.md, Meta Lead Ads)."""
        params = {"fields": LEAD_FIELDS, "limit": "100"}
        if since is not None:
            params["filtering"] = json.dumps(
                [
                    {
                        "field": "time_created",
                        "operator": "GREATER_THAN",
                        "value": int(since.timestamp()),
                    }
                ]
            )
        return [
            _lead(item)
            async for item in self._edge(f"/{form_id}/leads", token=page_token, params=params)
        ]


def _grant(body: Mapping[str, Any]) -> TokenGrant:
    token = body.get("access_token")
    if not token:
        raise ProviderRejected("token answer without access_token", provider=PROVIDER)
    expires = body.get("expires_in")
    return TokenGrant(str(token), int(expires) if expires else None)


def _form(item: Mapping[str, Any]) -> LeadForm:
    return LeadForm(
        id=_id(item.get("id")),
        name=str(item.get("name") or ""),
        status=str(item.get("status") or ""),
        locale=str(item.get("locale") or ""),
        leads_count=int(item.get("leads_count") or 0),
        created_time=parse_graph_time(item.get("created_time")),
        questions=tuple(
            FormQuestion(
                str(q.get("key") or ""), str(q.get("label") or ""), str(q.get("type") or "")
            )
            for q in item.get("questions") or ()
            if isinstance(q, dict)
        ),
    )


def _lead(body: Mapping[str, Any]) -> LeadData:
    fields: dict[str, tuple[str, ...]] = {}
    for entry in body.get("field_data") or ():
        if isinstance(entry, dict) and entry.get("name"):
            fields[str(entry["name"])] = tuple(str(v) for v in entry.get("values") or ())
    return LeadData(
        id=_id(body.get("id")),
        form_id=_id(body.get("form_id")),
        created_time=parse_graph_time(body.get("created_time")),
        ad_id=_id(body.get("ad_id")) or None,
        field_data=fields,
    )
