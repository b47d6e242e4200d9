"""WAHA (WhatsApp HTTP API) client: the calls the CRM makes, as frozen dataclasses.

Follows docs/providers.md, WAHA (WAHA OpenAPI 2026.7.1; https://waha.devlike.pro/docs/).
Every request carries `X-Api-Key`; errors become `ProviderError`s through the shared
translation, so a 404 is a final `ProviderRejected` with `status_code == 404` (see
`is_not_found`). Base URL and key come from the platform credentials on every use
(`WahaClient.for_platform`), so a super admin's change applies without a restart.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from server.errors import PlatformNotConfigured
from server.providers.errors import (
    PlatformCredentialsInvalid,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
)
from server.providers.http import raise_for_provider_response, translate_errors

PROVIDER = "waha"
# Events the CRM consumes (docs/providers.md, WAHA); never "*" (heavy).
WEBHOOK_EVENTS: tuple[str, ...] = ("session.status", "message", "message.any", "message.ack")


@dataclass(frozen=True)
class WahaMe:
    """`MeInfo`: the WhatsApp account linked to a session."""

    id: str  # "5511999999999@c.us"
    push_name: str | None = None

    @classmethod
    def parse(cls, raw: object) -> WahaMe | None:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
            return None
        name = raw.get("pushName")
        return cls(id=raw["id"], push_name=name if isinstance(name, str) else None)


@dataclass(frozen=True)
class WahaSession:
    """`SessionInfo` / `SessionDTO`: name, status (kept as WAHA spells it), me, config."""

    name: str
    status: str
    me: WahaMe | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def metadata(self) -> Mapping[str, str]:
        value = self.config.get("metadata")
        return value if isinstance(value, Mapping) else {}

    @property
    def webhooks(self) -> Sequence[Mapping[str, Any]]:
        value = self.config.get("webhooks")
        return [h for h in value if isinstance(h, Mapping)] if isinstance(value, list) else []

    @classmethod
    def parse(cls, raw: object) -> WahaSession:
        if not isinstance(raw, Mapping):
            raise ProviderRejected("session answer is not an object", provider=PROVIDER)
        config = raw.get("config")
        return cls(
            name=str(raw.get("name") or ""),
            status=str(raw.get("status") or ""),
            me=WahaMe.parse(raw.get("me")),
            config=config if isinstance(config, Mapping) else {},
        )


@dataclass(frozen=True)
class WahaQr:
    """The QR to show: the PNG bytes and the raw value encoded in it."""

    png: bytes
    mimetype: str
    value: str


@dataclass(frozen=True)
class WahaSentMessage:
    """The `WAMessage` answered by sendText."""

    id: str
    timestamp: int | None
    ack: int | None


@dataclass(frozen=True)
class WahaCredentials:
    base_url: str
    api_key: str
    webhook_hmac_key: str

    @classmethod
    def from_platform(cls, values: Mapping[str, str]) -> WahaCredentials:
        """From `PlatformCredentials.resolve(session, "waha")`; all three are needed."""
        missing = [k for k in ("base_url", "api_key", "webhook_hmac_key") if not values.get(k)]
        if missing:
            raise PlatformNotConfigured(
                "WAHA is not configured by the platform administrator",
                metadata={"provider": PROVIDER, "missing": ",".join(missing)},
            )
        return cls(values["base_url"].rstrip("/"), values["api_key"], values["webhook_hmac_key"])


def is_not_found(exc: BaseException) -> bool:
    """WAHA answered 404: the session (or message) does not exist there."""
    return isinstance(exc, ProviderError) and exc.status_code == 404


class WahaClient:
    """One WAHA server. Takes the shared `httpx.AsyncClient`; sets base URL and key per call."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        credentials: WahaCredentials,
        *,
        on_key_rejected: Callable[[PlatformCredentialsInvalid], Awaitable[None]] | None = None,
    ) -> None:
        self._http = http
        self.credentials = credentials
        self._on_key_rejected = on_key_rejected

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        accept: str = "application/json",
    ) -> httpx.Response:
        headers = {"X-Api-Key": self.credentials.api_key, "Accept": accept}
        try:
            async with translate_errors(PROVIDER):
                response = await self._http.request(
                    method,
                    f"{self.credentials.base_url}{path}",
                    json=dict(body) if body is not None else None,
                    params=dict(params) if params else None,
                    headers=headers,
                )
                return raise_for_provider_response(PROVIDER, response)
        except ProviderAuthError as exc:
            # WAHA's only credential is the platform's API key: its refusal is the platform's
            # misconfiguration, not the member's session or token.
            rejected = PlatformCredentialsInvalid(
                "WAHA refused the platform's API key",
                provider=PROVIDER,
                status_code=exc.status_code,
            )
            if self._on_key_rejected is not None:
                await self._on_key_rejected(rejected)
            raise rejected from exc

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        # WAHA (NestJS) answers `null` as an empty body; both mean "nothing".
        if not response.content.strip():
            return None
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProviderRejected(
                "answer is not JSON", provider=PROVIDER, status_code=response.status_code
            ) from exc

    # -- sessions (docs/providers.md, WAHA) -------------------------------------------------------

    async def create_session(
        self, name: str, config: Mapping[str, Any], *, start: bool = True
    ) -> WahaSession:
        """`POST /api/sessions`; `start` always sent (older Core defaulted it to false)."""
        body = {"name": name, "start": start, "config": dict(config)}
        return WahaSession.parse(self._json(await self._call("POST", "/api/sessions", body=body)))

    async def update_session(self, name: str, config: Mapping[str, Any]) -> WahaSession:
        """`PUT /api/sessions/{name}`: full config replacement; a running session restarts."""
        response = await self._call("PUT", f"/api/sessions/{name}", body={"config": dict(config)})
        return WahaSession.parse(self._json(response))

    async def get_session(self, name: str) -> WahaSession:
        return WahaSession.parse(self._json(await self._call("GET", f"/api/sessions/{name}")))

    async def _action(self, name: str, action: str) -> WahaSession:
        response = await self._call("POST", f"/api/sessions/{name}/{action}")
        return WahaSession.parse(self._json(response))

    async def start(self, name: str) -> WahaSession:
        return await self._action(name, "start")

    async def stop(self, name: str) -> WahaSession:
        return await self._action(name, "stop")

    async def restart(self, name: str) -> WahaSession:
        return await self._action(name, "restart")

    async def logout(self, name: str) -> WahaSession:
        return await self._action(name, "logout")

    async def delete(self, name: str) -> None:
        """`DELETE /api/sessions/{name}`: stop + logout + forget; idempotent (200, empty)."""
        await self._call("DELETE", f"/api/sessions/{name}")

    async def me(self, name: str) -> WahaMe | None:
        """`GET /api/sessions/{name}/me`: None unless authenticated and WORKING."""
        return WahaMe.parse(self._json(await self._call("GET", f"/api/sessions/{name}/me")))

    # -- pairing (docs/providers.md, WAHA) ---------------------------------------------------------

    async def qr(self, name: str) -> WahaQr:
        """The QR as PNG (JSON form, base64) and as its raw value: two calls, same QR unless
        it rotated in between, which the next SCAN_QR_CODE event reports anyway."""
        image = self._json(
            await self._call("GET", f"/api/{name}/auth/qr", params={"format": "image"})
        )
        raw = self._json(await self._call("GET", f"/api/{name}/auth/qr", params={"format": "raw"}))
        if not isinstance(image, Mapping) or not isinstance(image.get("data"), str):
            raise ProviderRejected("QR answer has no image data", provider=PROVIDER)
        try:
            png = base64.b64decode(image["data"], validate=True)
        except ValueError as exc:
            raise ProviderRejected("QR image is not base64", provider=PROVIDER) from exc
        value = raw.get("value") if isinstance(raw, Mapping) else None
        return WahaQr(
            png=png,
            mimetype=str(image.get("mimetype") or "image/png"),
            value=value if isinstance(value, str) else "",
        )

    async def request_code(self, name: str, phone_digits: str) -> str:
        """`POST /api/{session}/auth/request-code` with digits only (country code, no `+`)."""
        response = await self._call(
            "POST", f"/api/{name}/auth/request-code", body={"phoneNumber": phone_digits}
        )
        body = self._json(response)
        code = body.get("code") if isinstance(body, Mapping) else None
        if not isinstance(code, str) or not code:
            raise ProviderRejected("request-code answer has no code", provider=PROVIDER)
        return code

    # -- messages (docs/providers.md, WAHA) --------------------------------------------------------

    async def send_text(
        self,
        session: str,
        chat_id: str,
        text: str,
        *,
        reply_to: str | None = None,
        message_key: str | None = None,
    ) -> WahaSentMessage:
        """`message_key` is sendText's pre-generated `id`: the same key sent again is the same
        message to WhatsApp (server/whatsapp/message_ids.py)."""
        body: dict[str, Any] = {"session": session, "chatId": chat_id, "text": text}
        if reply_to:
            body["reply_to"] = reply_to
        if message_key:
            body["id"] = message_key
        raw = self._json(await self._call("POST", "/api/sendText", body=body))
        if not isinstance(raw, Mapping):
            raise ProviderRejected("sendText answer is not an object", provider=PROVIDER)
        message_id = raw.get("id")
        if isinstance(message_id, Mapping):  # some engines send the key object
            message_id = message_id.get("_serialized") or json.dumps(message_id, sort_keys=True)
        timestamp, ack = raw.get("timestamp"), raw.get("ack")
        return WahaSentMessage(
            id=str(message_id or ""),
            timestamp=timestamp if isinstance(timestamp, int) else None,
            ack=ack if isinstance(ack, int) and not isinstance(ack, bool) else None,
        )

    async def download(self, path: str) -> tuple[str, bytes]:
        """A received message's file (`media.url`'s path on this WAHA), with the API key.
        Returns (mimetype, bytes). https://waha.devlike.pro/docs/how-to/receive-messages/#media"""
        response = await self._call("GET", path, accept="*/*")
        mimetype = response.headers.get("content-type", "application/octet-stream")
        return mimetype.split(";", 1)[0].strip(), response.content

    async def send_seen(self, session: str, chat_id: str, message_ids: list[str]) -> None:
        """Marks a chat's messages read on the phone (blue ticks to the sender).
        https://waha.devlike.pro/docs/how-to/send-messages/#send-seen"""
        body: dict[str, Any] = {"session": session, "chatId": chat_id}
        if message_ids:
            body["messageIds"] = message_ids
        await self._call("POST", "/api/sendSeen", body=body)


def session_config(
    *, metadata: Mapping[str, str], webhook_url: str, hmac_key: str
) -> dict[str, Any]:
    """The `config` we create sessions with: metadata to route events, one signed webhook."""
    return {
        "metadata": dict(metadata),
        "webhooks": [
            {
                "url": webhook_url,
                "events": list(WEBHOOK_EVENTS),
                "hmac": {"key": hmac_key},
                "retries": {"policy": "exponential", "delaySeconds": 2, "attempts": 10},
            }
        ],
    }


def config_matches(current: WahaSession, wanted: Mapping[str, Any]) -> bool:
    """Whether WAHA already holds our metadata and webhook (so no PUT, which would restart)."""
    if dict(current.metadata) != dict(wanted.get("metadata") or {}):
        return False
    hooks = current.webhooks
    want = (wanted.get("webhooks") or [{}])[0]
    return any(
        h.get("url") == want.get("url")
        and sorted(h.get("events") or []) == sorted(want.get("events") or [])
        and isinstance(h.get("hmac"), Mapping)
        and h["hmac"].get("key") == want["hmac"]["key"]
        for h in hooks
    )
