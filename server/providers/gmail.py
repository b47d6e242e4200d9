"""Gmail API, `users.messages.send` (https://developers.google.com/gmail/api/reference/rest/v1/users.messages/send).

A message goes as JSON `{"raw": base64url}`; one too large for a JSON body goes through the
upload endpoint (`/upload/gmail/v1/...`, up to 35 MB:
https://developers.google.com/gmail/api/guides/uploads): `uploadType=media` (`message/rfc822`),
or, for a reply that must stay in its thread, `uploadType=multipart` (`multipart/related`: the
`{"threadId": ...}` metadata, then the message). Errors use Google's format and are
translated once (`server.providers.http`): 401 a dead token, 403/429 rate limits (daily
limits back off for an hour), 5xx an outage.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import httpx

from server.providers.http import raise_for_provider_response, translate_errors

PROVIDER = "gmail"
SEND_PATH = "/gmail/v1/users/me/messages/send"
UPLOAD_PATH = "/upload/gmail/v1/users/me/messages/send"
# Above this the message goes through the media upload instead of a JSON body.
UPLOAD_ABOVE_BYTES = 4 * 1024 * 1024

Guard = Callable[[], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class GmailSent:
    id: str
    thread_id: str


class GmailClient:
    def __init__(self, http: httpx.AsyncClient, api_url: str, guard: Guard | None = None) -> None:
        self._http = http
        self._api_url = api_url.rstrip("/")
        self._guard = guard or (lambda: nullcontext())

    async def send(self, access_token: str, raw: bytes, thread_id: str = "") -> GmailSent:
        headers = {"authorization": f"Bearer {access_token}"}
        async with self._guard(), translate_errors(PROVIDER):
            if len(raw) > UPLOAD_ABOVE_BYTES and thread_id:
                content_type, body_bytes = _related({"threadId": thread_id}, raw)
                response = await self._http.post(
                    f"{self._api_url}{UPLOAD_PATH}",
                    params={"uploadType": "multipart"},
                    content=body_bytes,
                    headers={**headers, "content-type": content_type},
                )
            elif len(raw) > UPLOAD_ABOVE_BYTES:
                response = await self._http.post(
                    f"{self._api_url}{UPLOAD_PATH}",
                    params={"uploadType": "media"},
                    content=raw,
                    headers={**headers, "content-type": "message/rfc822"},
                )
            else:
                body: dict[str, str] = {"raw": base64.urlsafe_b64encode(raw).decode()}
                if thread_id:
                    body["threadId"] = thread_id
                response = await self._http.post(
                    f"{self._api_url}{SEND_PATH}", json=body, headers=headers
                )
            raise_for_provider_response(PROVIDER, response)
        data = response.json()
        return GmailSent(id=str(data.get("id") or ""), thread_id=str(data.get("threadId") or ""))


def _related(metadata: dict[str, str], raw: bytes) -> tuple[str, bytes]:
    """A multipart/related body: the JSON metadata part, then the message part."""
    boundary = secrets.token_hex(16)
    while boundary.encode() in raw:  # the delimiter must not occur in the message
        boundary = secrets.token_hex(16)
    mark = f"--{boundary}".encode()
    body = b"".join(
        [
            mark,
            b"\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n",
            json.dumps(metadata).encode(),
            b"\r\n",
            mark,
            b"\r\nContent-Type: message/rfc822\r\n\r\n",
            raw,
            b"\r\n",
            mark,
            b"--\r\n",
        ]
    )
    return f'multipart/related; boundary="{boundary}"', body
