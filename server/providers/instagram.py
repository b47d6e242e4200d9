"""Instagram API with Instagram Login (shared providers contract §6): the login URL, token
exchange and refresh, the account, webhook subscription, profiles and sending messages.

Three hosts: the login dialog (www.instagram.com), the code exchange (api.instagram.com, form
POST) and the Graph host (graph.instagram.com, versioned paths; the token endpoints are
unversioned). Ids stay strings. Failures are translated once (`translate_errors("instagram")`):
190 -> ProviderAuthError, code 10 -> permission denied (the messaging window is told apart
by `is_window_error`).
https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from server.providers.errors import ProviderError, ProviderRejected
from server.providers.http import raise_for_provider_response, translate_errors

PROVIDER = "instagram"
SCOPES: tuple[str, ...] = ("instagram_business_basic", "instagram_business_manage_messages")
WEBHOOK_FIELDS = "messages,messaging_seen,messaging_postbacks,message_reactions"
ME_FIELDS = "user_id,username,name,account_type,profile_picture_url"
# Code 10 + this subcode: "This message is sent outside of allowed window".
WINDOW_SUBCODE = 2534022

Guard = Callable[[], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class ShortToken:
    access_token: str
    user_id: str
    permissions: tuple[str, ...]


@dataclass(frozen=True)
class LongToken:
    access_token: str
    expires_in: int


@dataclass(frozen=True)
class Account:
    user_id: str  # the professional account id: webhooks' entry[].id
    app_scoped_id: str
    username: str
    name: str
    account_type: str
    profile_picture_url: str


@dataclass(frozen=True)
class Profile:
    igsid: str
    name: str
    username: str


@dataclass(frozen=True)
class Sent:
    recipient_id: str
    message_id: str


def strip_code(code: str) -> str:
    """Instagram appends `#_` to the code in the redirect; it is not part of the code."""
    code = code.strip()
    return code[:-2] if code.endswith("#_") else code


def is_window_error(exc: ProviderError) -> bool:
    return exc.provider_subcode == WINDOW_SUBCODE or (
        str(exc.provider_code) == "10" and "window" in str(exc).lower()
    )


def authorize_url(oauth_base: str, *, app_id: str, redirect_uri: str, state: str) -> str:
    query = urlencode(
        {
            "client_id": app_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": ",".join(SCOPES),
            "state": state,
        }
    )
    return f"{oauth_base.rstrip('/')}/oauth/authorize?{query}"


@asynccontextmanager
async def _no_guard() -> AsyncIterator[None]:
    yield


class InstagramClient:
    """`guard` is the instagram circuit breaker's context (None: no breaker)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_url: str,
        graph_url: str,
        version: str,
        guard: Guard | None = None,
    ) -> None:
        self._http = http
        self._api = api_url.rstrip("/")
        self._graph = graph_url.rstrip("/")
        self._version = version
        self._guard = guard or _no_guard

    async def _request(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        async with self._guard(), translate_errors(PROVIDER):
            response = await self._http.request(
                method, url, params=params, data=data, json=payload, headers=headers
            )
            raise_for_provider_response(PROVIDER, response)
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise ProviderRejected("answer is not JSON", provider=PROVIDER) from exc
        if not isinstance(body, dict):
            raise ProviderRejected("answer is not a JSON object", provider=PROVIDER)
        return body

    def _v(self, path: str) -> str:
        return f"{self._graph}/{self._version}{path}"

    async def exchange_code(
        self, *, app_id: str, app_secret: str, redirect_uri: str, code: str
    ) -> ShortToken:
        """Step 2: form POST; the answer is `{"data": [...]}` or flat (both are seen)."""
        body = await self._request(
            "POST",
            f"{self._api}/oauth/access_token",
            data={
                "client_id": app_id,
                "client_secret": app_secret,
                "grant_type": "authorization_code",
                "redirect_uri": redirect_uri,
                "code": strip_code(code),
            },
        )
        data = body.get("data")
        entry = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else body
        token = entry.get("access_token")
        if not token:
            raise ProviderRejected("code exchange without access_token", provider=PROVIDER)
        permissions = entry.get("permissions") or ""
        if isinstance(permissions, list):
            scopes = tuple(str(p) for p in permissions)
        else:
            scopes = tuple(p for p in str(permissions).split(",") if p)
        return ShortToken(str(token), str(entry.get("user_id") or ""), scopes)

    async def exchange_long_lived(self, *, app_secret: str, short_token: str) -> LongToken:
        """Step 3 (server side only: it carries the app secret)."""
        body = await self._request(
            "GET",
            f"{self._graph}/access_token",
            params={
                "grant_type": "ig_exchange_token",
                "client_secret": app_secret,
                "access_token": short_token,
            },
        )
        return _long(body)

    async def refresh(self, long_token: str) -> LongToken:
        """Step 4: only for a token at least 24 h old and not expired."""
        body = await self._request(
            "GET",
            f"{self._graph}/refresh_access_token",
            params={"grant_type": "ig_refresh_token", "access_token": long_token},
        )
        return _long(body)

    async def me(self, token: str) -> Account:
        body = await self._request("GET", self._v("/me"), token=token, params={"fields": ME_FIELDS})
        return Account(
            user_id=str(body.get("user_id") or ""),
            app_scoped_id=str(body.get("id") or ""),
            username=str(body.get("username") or ""),
            name=str(body.get("name") or ""),
            account_type=str(body.get("account_type") or ""),
            profile_picture_url=str(body.get("profile_picture_url") or ""),
        )

    async def subscribe(self, token: str) -> bool:
        body = await self._request(
            "POST",
            self._v("/me/subscribed_apps"),
            token=token,
            params={"subscribed_fields": WEBHOOK_FIELDS},
        )
        return body.get("success") in (True, "true")

    async def unsubscribe(self, token: str) -> None:
        await self._request("DELETE", self._v("/me/subscribed_apps"), token=token)

    async def profile(self, token: str, igsid: str) -> Profile:
        body = await self._request(
            "GET", self._v(f"/{igsid}"), token=token, params={"fields": "name,username,profile_pic"}
        )
        return Profile(igsid, str(body.get("name") or ""), str(body.get("username") or ""))

    async def send(
        self,
        token: str,
        account_id: str,
        *,
        recipient_id: str,
        text: str = "",
        image_url: str = "",
        attachment_type: str = "image",
        human_agent: bool = False,
    ) -> Sent:
        """Providers contract §6.1: text, or one attachment by URL; HUMAN_AGENT as a tag."""
        message: dict[str, Any] = (
            {"text": text}
            if text
            else {"attachment": {"type": attachment_type, "payload": {"url": image_url}}}
        )
        payload: dict[str, Any] = {"recipient": {"id": recipient_id}, "message": message}
        if human_agent:
            payload["messaging_type"] = "MESSAGE_TAG"
            payload["tag"] = "HUMAN_AGENT"
        body = await self._request(
            "POST", self._v(f"/{account_id}/messages"), token=token, payload=payload
        )
        return Sent(
            str(body.get("recipient_id") or recipient_id), str(body.get("message_id") or "")
        )


def _long(body: Mapping[str, Any]) -> LongToken:
    token = body.get("access_token")
    if not token:
        raise ProviderRejected("token answer without access_token", provider=PROVIDER)
    return LongToken(str(token), int(body.get("expires_in") or 0))
