"""Gmail API `users.messages.send` (JSON `raw`, base64url, and the media upload for large
messages), with its errors: 401 without a valid token, 403 without a sending scope, 400 for
a message with no recipient, 413 above 35 MB, and rate limits played from the control
routes (429 `rateLimitExceeded`, 403 `userRateLimitExceeded` / `dailyLimitExceeded`).

Threads follow Gmail's rule: a message stays in a thread only when `threadId` is given (in the
JSON body, or in the metadata part of a `uploadType=multipart` upload) and its
In-Reply-To/References name a message of that thread; anything else starts one
(https://developers.google.com/gmail/api/guides/threads).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.utils import getaddresses
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.google.errors import api_error
from sandbox.google.oauth import bearer_grant

SEND_SCOPES = {
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.compose",
    "https://www.googleapis.com/auth/gmail.modify",
    "https://mail.google.com/",
}
MAX_BYTES = 35 * 1024 * 1024
PATH = "/gmail/v1/users/me/messages/send"
UPLOAD_PATH = "/upload/gmail/v1/users/me/messages/send"


@dataclass
class SentMessage:
    id: str
    thread_id: str
    account: str
    raw: bytes
    recipients: list[str]
    message_id: str
    uploaded: bool


@dataclass
class GmailState:
    sent: list[SentMessage] = field(default_factory=list)
    # (status, reason) the next sends answer, one per call (a rate limit at Google).
    failures: list[tuple[int, str]] = field(default_factory=list)


def _state(request: Request) -> GmailState:
    state: GmailState = request.app.state.gmail
    return state


def _new_id() -> str:
    return secrets.token_hex(8)


def _thread(state: GmailState, account: str, given: str, refs: list[str]) -> str:
    thread = [m for m in state.sent if m.account == account and m.thread_id == given]
    if given and any(m.message_id and m.message_id in refs for m in thread):
        return given
    return _new_id()


def _send(request: Request, raw: bytes, thread_id: str, uploaded: bool) -> Response:
    grant = bearer_grant(request)
    if grant is None:
        return api_error(401, "authError", "Invalid Credentials")
    if not SEND_SCOPES & set(grant.scopes):
        return api_error(403, "insufficientPermissions", "Request had insufficient scopes.")
    state = _state(request)
    if state.failures:
        status, reason = state.failures.pop(0)
        return api_error(status, reason, "Rate Limit Exceeded" if status != 500 else "Backend")
    if len(raw) > MAX_BYTES:
        return api_error(413, "messageTooLarge", "Message too large")
    parsed = message_from_bytes(raw, policy=policy.default)
    recipients = [
        addr
        for _, addr in getaddresses(
            [str(v) for key in ("To", "Cc", "Bcc") for v in parsed.get_all(key) or ()]
        )
        if addr
    ]
    if not recipients:
        return api_error(400, "invalidArgument", "Invalid To header")
    refs = " ".join(str(parsed.get(k) or "") for k in ("In-Reply-To", "References")).split()
    account = grant.account.email
    message = SentMessage(
        id=_new_id(),
        thread_id=_thread(state, account, thread_id, refs),
        account=account,
        raw=raw,
        recipients=recipients,
        message_id=str(parsed.get("Message-ID") or ""),
        uploaded=uploaded,
    )
    state.sent.append(message)
    return JSONResponse({"id": message.id, "threadId": message.thread_id, "labelIds": ["SENT"]})


async def send(request: Request) -> Response:
    try:
        body: Any = json.loads(await request.body())
        encoded = str(body["raw"])
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (ValueError, KeyError, TypeError, binascii.Error):
        return api_error(400, "invalidArgument", "'raw' RFC822 payload message string or "
                         "uploading message via /upload/* URL required")  # fmt: skip
    return _send(request, raw, str(body.get("threadId") or ""), uploaded=False)


async def upload(request: Request) -> Response:
    kind = request.query_params.get("uploadType")
    content_type = request.headers.get("content-type", "")
    if kind == "media":
        if content_type.split(";")[0].strip() != "message/rfc822":
            return api_error(400, "invalidArgument", "Content-Type must be message/rfc822")
        return _send(request, await request.body(), "", uploaded=True)
    if kind == "multipart":
        parts = _related_parts(content_type, await request.body())
        if parts is None or [t for t, _ in parts] != ["application/json", "message/rfc822"]:
            return api_error(400, "invalidArgument", "multipart/related: metadata, then media")
        try:
            metadata: Any = json.loads(parts[0][1])
            thread_id = str(metadata.get("threadId") or "")
        except (ValueError, AttributeError):
            return api_error(400, "invalidArgument", "Invalid JSON metadata")
        return _send(request, parts[1][1], thread_id, uploaded=True)
    return api_error(400, "invalidArgument", "uploadType must be media or multipart")


def _related_parts(content_type: str, body: bytes) -> list[tuple[str, bytes]] | None:
    """(content type, bytes) of each part of a multipart/related body (RFC 2046: the CRLF
    before a delimiter belongs to it)."""
    main, _, params = content_type.partition(";")
    if main.strip().lower() != "multipart/related":
        return None
    boundary = ""
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        return None
    delimiter = b"\r\n--" + boundary.encode()
    segments = (b"\r\n" + body).split(delimiter)
    parts: list[tuple[str, bytes]] = []
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            return parts
        head, found, content = segment.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not found:
            return None
        kind = ""
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-type":
                kind = value.split(";")[0].strip().lower()
        parts.append((kind, content))
    return None  # no closing delimiter


async def sent(request: Request) -> Response:
    """Control: every message sent, raw as base64url, newest last."""
    return JSONResponse(
        [
            {
                "id": m.id,
                "threadId": m.thread_id,
                "account": m.account,
                "raw": base64.urlsafe_b64encode(m.raw).decode(),
                "recipients": m.recipients,
                "uploaded": m.uploaded,
            }
            for m in _state(request).sent
        ]
    )


async def fail(request: Request) -> Response:
    """Control: the next sends answer these errors (`[{"status": 429, "reason": ...}]`)."""
    body = await request.json()
    _state(request).failures.extend((int(f["status"]), str(f["reason"])) for f in body)
    return JSONResponse({"ok": True})


ROUTES = [
    Route(PATH, send, methods=["POST"]),
    Route(UPLOAD_PATH, upload, methods=["POST"]),
    Route("/_control/gmail/sent", sent, methods=["GET"]),
    Route("/_control/gmail/fail", fail, methods=["POST"]),
]
