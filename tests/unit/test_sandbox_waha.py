"""The WAHA fake against the contract in docs/providers.md (WAHA).

API calls go through httpx's ASGITransport into the whole sandbox app (so the `/waha` mount is
exercised too); webhooks go over real loopback HTTP to a tiny uvicorn receiver.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.app import build_sandbox_app
from sandbox.settings import SandboxSettings, WahaSettings
from sandbox.waha import WahaFake, sign

API_KEY = "test-waha-key"
HMAC_KEY = "per-session-secret"
ALL_EVENTS = ["session.status", "message", "message.any", "message.ack"]
EVENT_ID = re.compile(r"^evt_[0-9a-hjkmnp-tv-z]{26}$")
ENVELOPE_KEYS = {
    "id",
    "timestamp",
    "event",
    "session",
    "metadata",
    "me",
    "payload",
    "engine",
    "environment",
}
WA_MESSAGE_KEYS = {
    "id",
    "timestamp",
    "from",
    "fromMe",
    "source",
    "to",
    "participant",
    "body",
    "hasMedia",
    "media",
    "ack",
    "ackName",
    "location",
    "vCards",
    "replyTo",
    "_data",
}


# -- webhook receiver ------------------------------------------------------------------------


@dataclass
class Hook:
    """One webhook request as it arrived on the socket."""

    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def envelope(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.raw)
        return parsed


@dataclass
class Receiver:
    """Records every POST; `reply` picks the status code to answer (200 by default)."""

    url: str
    hooks: list[Hook] = field(default_factory=list)
    reply: Callable[[Hook], int] = lambda _hook: 200

    def of(self, event: str, session: str | None = None) -> list[Hook]:
        return [
            h
            for h in self.hooks
            if h.envelope["event"] == event
            and (session is None or h.envelope["session"] == session)
        ]

    async def wait_for(
        self, predicate: Callable[[Hook], bool], count: int = 1, within: float = 5.0
    ) -> list[Hook]:
        deadline = time.monotonic() + within
        while True:
            found = [h for h in self.hooks if predicate(h)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                seen = [(h.envelope["event"], h.envelope["payload"]) for h in self.hooks]
                raise AssertionError(f"webhook not received; got {seen}")
            await asyncio.sleep(0.01)

    async def wait_status(self, session: str, status: str, count: int = 1) -> list[Hook]:
        return await self.wait_for(
            lambda h: (
                h.envelope["event"] == "session.status"
                and h.envelope["session"] == session
                and h.envelope["payload"]["status"] == status
            ),
            count=count,
        )


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # pytest owns the signals; the receiver must not install handlers.
        yield


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    holder: list[Receiver] = []

    async def record(request: Request) -> Response:
        rec = holder[0]
        hook = Hook(request.url.path, dict(request.headers), await request.body())
        rec.hooks.append(hook)
        return Response(status_code=rec.reply(hook))

    app = Starlette(routes=[Route("/{path:path}", record, methods=["POST"])])
    # Bind first so the port is known and connections queue before uvicorn accepts them.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = _QuietServer(uvicorn.Config(app, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    holder.append(Receiver(url=f"http://127.0.0.1:{port}/hooks/waha"))
    yield holder[0]
    server.should_exit = True
    await task
    sock.close()


# -- the sandbox -----------------------------------------------------------------------------


@dataclass
class Sandbox:
    api: httpx.AsyncClient
    fake: WahaFake
    receiver: Receiver
    app: Starlette

    def keyless(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://sandbox/waha"
        )

    async def create(
        self,
        name: str = "tenant42-line1",
        events: list[str] | None = None,
        start: bool = True,
        retries: dict[str, Any] | None = None,
    ) -> httpx.Response:
        body = {
            "name": name,
            "start": start,
            "config": {
                "metadata": {"tenant_id": "42", "line_id": "1"},
                "webhooks": [
                    {
                        "url": self.receiver.url,
                        "events": ALL_EVENTS if events is None else events,
                        "hmac": {"key": HMAC_KEY},
                        "retries": retries
                        or {"policy": "constant", "delaySeconds": 2, "attempts": 3},
                        "customHeaders": [{"name": "X-Tenant", "value": "42"}],
                    }
                ],
            },
        }
        return await self.api.post("/api/sessions", json=body)

    async def connected(self, name: str = "tenant42-line1") -> dict[str, Any]:
        """Create, wait for the QR, scan it: a WORKING session."""
        assert (await self.create(name)).status_code == 201
        await self.receiver.wait_status(name, "SCAN_QR_CODE")
        scanned = await self.api.post(
            f"/_control/sessions/{name}/scan",
            json={"phone": "5511999990000", "pushName": "Joao"},
        )
        assert scanned.status_code == 200, scanned.text
        await self.receiver.wait_status(name, "WORKING")
        result: dict[str, Any] = scanned.json()
        return result


@pytest.fixture
async def sandbox(receiver: Receiver) -> AsyncIterator[Sandbox]:
    settings = SandboxSettings(
        waha=WahaSettings(
            api_key=API_KEY,
            start_delay_seconds=0.01,
            qr_rotation_seconds=3600,
            status_wait_seconds=0.2,
            webhook_retry_delay_scale=0.005,
            webhook_timeout_seconds=2,
        )
    )
    app = build_sandbox_app(settings)
    fake: WahaFake = app.state.fakes["/waha"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sandbox/waha",
        headers={"X-Api-Key": API_KEY},
    ) as client:
        yield Sandbox(api=client, fake=fake, receiver=receiver, app=app)
    await fake.aclose()


def _assert_signed(hook: Hook) -> None:
    assert hook.headers["x-webhook-hmac-algorithm"] == "sha512"
    expected = hmac.new(HMAC_KEY.encode(), hook.raw, hashlib.sha512).hexdigest()
    assert hmac.compare_digest(expected, hook.headers["x-webhook-hmac"])


def _assert_envelope(hook: Hook, event: str, session: str) -> dict[str, Any]:
    envelope = hook.envelope
    assert set(envelope) == ENVELOPE_KEYS
    assert EVENT_ID.match(envelope["id"]), envelope["id"]
    assert envelope["event"] == event
    assert envelope["session"] == session
    assert envelope["metadata"] == {"tenant_id": "42", "line_id": "1"}
    assert envelope["engine"] == "WEBJS"
    assert {"version", "engine", "tier", "browser", "platform", "worker"} <= set(
        envelope["environment"]
    )
    # Envelope timestamps are ms; message timestamps are s.
    assert envelope["timestamp"] > 10**12
    assert hook.headers["content-type"] == "application/json"
    assert hook.headers["user-agent"].startswith("WAHA/")
    assert hook.headers["x-tenant"] == "42"
    assert int(hook.headers["x-webhook-timestamp"]) > 10**12
    _assert_signed(hook)
    return envelope


def _png_dimensions(data: bytes) -> tuple[int, int]:
    """Walk the PNG chunks, checking each CRC and that IDAT inflates; return (w, h)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, size = 8, b"", (0, 0)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        chunk = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + chunk) == crc
        if kind == b"IHDR":
            size = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        offset += 12 + length
        if kind == b"IEND":
            break
    assert zlib.decompress(idat)
    return size


# -- tests -----------------------------------------------------------------------------------


def test_hmac_matches_the_published_vector() -> None:
    body = b'{"event":"message","session":"default","engine":"WEBJS"}'
    assert sign("my-secret-key", body) == (
        "208f8a55dde9e05519e898b10b89bf0d0b3b0fdf11fdbf09b6b90476301b98d8"
        "097c462b2b17a6ce93b6b47a136cf2e78a33a63f6752c2c1631777076153fa89"
    )


async def test_wrong_or_missing_api_key_is_401_in_waha_shape(sandbox: Sandbox) -> None:
    for headers in ({"X-Api-Key": "nope"}, {"X-Api-Key": ""}):
        response = await sandbox.api.get("/api/sessions", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"message": "Unauthorized", "statusCode": 401}
    async with sandbox.keyless() as bare:
        assert (await bare.get("/api/sessions")).status_code == 401
        assert (await bare.get(f"/api/sessions?x-api-key={API_KEY}")).status_code == 200
        # Control endpoints are the test's, not WAHA's: no key.
        assert (await bare.get("/_control/sessions")).status_code == 200


async def test_unknown_session_is_404_and_delete_is_idempotent(sandbox: Sandbox) -> None:
    response = await sandbox.api.get("/api/sessions/ghost")
    assert response.status_code == 404
    assert response.json() == {
        "statusCode": 404,
        "message": "Session not found",
        "error": "Not Found",
    }
    for path in ("/api/sessions/ghost/start", "/api/sessions/ghost/logout"):
        assert (await sandbox.api.post(path)).status_code == 404
    qr = await sandbox.api.get("/api/ghost/auth/qr")
    assert qr.status_code == 404
    assert qr.json()["error"] == "Not Found"
    sent = await sandbox.api.post(
        "/api/sendText", json={"session": "ghost", "chatId": "1@c.us", "text": "x"}
    )
    assert sent.status_code == 404
    unknown_route = await sandbox.api.post("/api/nothing-here")
    assert unknown_route.status_code == 404
    assert unknown_route.json()["message"] == "Cannot POST /api/nothing-here"
    deleted = await sandbox.api.delete("/api/sessions/ghost")
    assert deleted.status_code == 200
    assert deleted.content == b""


async def test_create_twice_is_422_and_bad_body_is_400(sandbox: Sandbox) -> None:
    assert (await sandbox.create("dup", start=False)).status_code == 201
    again = await sandbox.create("dup", start=False)
    assert again.status_code == 422
    assert again.json()["message"] == "Session 'dup' already exists. Use PUT to update it."
    bad = await sandbox.api.post(
        "/api/sessions",
        json={"name": "x" * 55, "config": {"webhooks": [{"url": "nope", "events": "message"}]}},
    )
    assert bad.status_code == 400
    body = bad.json()
    assert body["statusCode"] == 400 and body["error"] == "Bad Request"
    assert isinstance(body["message"], list) and len(body["message"]) == 3


async def test_full_lifecycle(sandbox: Sandbox) -> None:
    api, receiver, name = sandbox.api, sandbox.receiver, "tenant42-line1"

    created = await sandbox.create(name)
    assert created.status_code == 201
    info = created.json()
    assert info["status"] == "STARTING" and info["me"] is None
    assert info["config"]["webhooks"][0]["hmac"] == {"key": HMAC_KEY}
    assert info["config"]["metadata"] == {"tenant_id": "42", "line_id": "1"}

    starting = (await receiver.wait_status(name, "STARTING"))[0]
    envelope = _assert_envelope(starting, "session.status", name)
    assert envelope["me"] is None
    (qr_event,) = await receiver.wait_status(name, "SCAN_QR_CODE")
    payload = qr_event.envelope["payload"]
    assert set(payload) == {"name", "status", "statuses", "data"}
    assert [s["status"] for s in payload["statuses"]] == ["STARTING", "SCAN_QR_CODE"]

    got = (await api.get(f"/api/sessions/{name}")).json()
    assert got["status"] == "SCAN_QR_CODE"
    assert set(got) == {"name", "status", "config", "me", "engine", "presence", "timestamps"}

    png = await api.get(f"/api/{name}/auth/qr")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    width, height = _png_dimensions(png.content)
    assert width == height and width > 100
    raw = (await api.get(f"/api/{name}/auth/qr", params={"format": "raw"})).json()
    control = (await api.get("/_control/sessions")).json()[0]
    assert raw == {"value": control["qrValue"]} and raw["value"].startswith("2@")
    as_json = await api.get(f"/api/{name}/auth/qr", headers={"Accept": "application/json"})
    assert as_json.json()["mimetype"] == "image/png"
    assert base64.b64decode(as_json.json()["data"])[:8] == b"\x89PNG\r\n\x1a\n"

    scanned = await api.post(
        f"/_control/sessions/{name}/scan",
        json={"phone": "5511999990000", "pushName": "Joao", "value": raw["value"]},
    )
    assert scanned.status_code == 200
    (working,) = await receiver.wait_status(name, "WORKING")
    me = {"id": "5511999990000@c.us", "pushName": "Joao"}
    assert _assert_envelope(working, "session.status", name)["me"] == me
    assert (await api.get(f"/api/sessions/{name}")).json()["me"] == me
    assert (await api.get(f"/api/sessions/{name}/me")).json() == me
    not_now = await api.get(f"/api/{name}/auth/qr")
    assert not_now.status_code == 422
    assert not_now.json()["status"] == "WORKING"

    inbound = await api.post(
        f"/_control/sessions/{name}/inbound",
        json={"from": "5511988887777", "body": "Olá, quero saber mais", "pushName": "Maria"},
    )
    message_id = inbound.json()["id"]
    assert message_id.startswith("false_5511988887777@c.us_")
    (incoming,) = await receiver.wait_for(lambda h: h.envelope["event"] == "message")
    msg = _assert_envelope(incoming, "message", name)["payload"]
    assert set(msg) >= WA_MESSAGE_KEYS
    assert msg["id"] == message_id and msg["fromMe"] is False
    assert msg["from"] == "5511988887777@c.us" and msg["to"] == me["id"]
    assert msg["body"] == "Olá, quero saber mais" and msg["timestamp"] < 10**11
    await receiver.wait_for(
        lambda h: h.envelope["event"] == "message.any" and h.envelope["payload"]["id"] == message_id
    )

    sent = await api.post(
        "/api/sendText",
        json={"session": name, "chatId": "5511988887777@c.us", "text": "Oi Maria!"},
    )
    assert sent.status_code == 201
    out = sent.json()
    assert set(out) >= WA_MESSAGE_KEYS
    assert out["fromMe"] is True and out["source"] == "api" and out["to"] == "5511988887777@c.us"
    recorded = (await api.get("/_control/messages", params={"source": "api"})).json()
    assert [r["message"]["body"] for r in recorded] == ["Oi Maria!"]
    await receiver.wait_for(
        lambda h: h.envelope["event"] == "message.any" and h.envelope["payload"]["id"] == out["id"]
    )

    # A pre-generated id is the message's id; sent again, it is that same message.
    keyed = {"session": name, "chatId": "5511988887777@c.us", "text": "Proposta", "id": "3EB0AB12"}
    first, again = [(await api.post("/api/sendText", json=keyed)).json() for _ in range(2)]
    assert first == again and first["id"] == "true_5511988887777@c.us_3EB0AB12"
    recorded = (await api.get("/_control/messages", params={"source": "api"})).json()
    assert [(r["message"]["body"], r["repeats"]) for r in recorded] == [
        ("Oi Maria!", 0),
        ("Proposta", 1),
    ]

    acked = await api.post(f"/_control/sessions/{name}/ack", json={"id": out["id"], "ack": 3})
    assert acked.status_code == 200
    (ack_hook,) = await receiver.wait_for(lambda h: h.envelope["event"] == "message.ack")
    ack = _assert_envelope(ack_hook, "message.ack", name)["payload"]
    assert {k: ack[k] for k in ("id", "fromMe", "ack", "ackName")} == {
        "id": out["id"],
        "fromMe": True,
        "ack": 3,
        "ackName": "READ",
    }
    assert {"from", "to", "participant"} <= set(ack)

    logged_out = await api.post(f"/api/sessions/{name}/logout")
    assert logged_out.status_code == 201
    assert set(logged_out.json()) == {"name", "status", "config"}
    # A running session restarts after logout: a new QR, no `me`.
    await receiver.wait_status(name, "SCAN_QR_CODE", count=2)
    assert (await api.get(f"/api/sessions/{name}")).json()["me"] is None

    assert (await api.delete(f"/api/sessions/{name}")).status_code == 200
    assert (await api.get(f"/api/sessions/{name}")).status_code == 404
    # `message` never carried our own message.
    assert all(not h.envelope["payload"]["fromMe"] for h in receiver.of("message"))


async def test_phone_sent_message_is_message_any_from_me_only(sandbox: Sandbox) -> None:
    name = "tenant42-line1"
    await sandbox.connected(name)
    sent = await sandbox.api.post(
        f"/_control/sessions/{name}/phone-send", json={"to": "5511977776666", "body": "do celular"}
    )
    assert sent.status_code == 200
    (hook,) = await sandbox.receiver.wait_for(lambda h: h.envelope["event"] == "message.any")
    payload = hook.envelope["payload"]
    assert payload["fromMe"] is True and payload["source"] == "app"
    assert payload["from"] == "5511999990000@c.us" and payload["to"] == "5511977776666@c.us"
    assert await sandbox.fake.state.dispatcher.drain(2)
    assert sandbox.receiver.of("message") == []


async def test_only_subscribed_events_are_sent(sandbox: Sandbox) -> None:
    name = "status-only"
    assert (await sandbox.create(name, events=["session.status"])).status_code == 201
    await sandbox.receiver.wait_status(name, "SCAN_QR_CODE")
    await sandbox.api.post(f"/_control/sessions/{name}/scan", json={})
    await sandbox.receiver.wait_status(name, "WORKING")
    await sandbox.api.post(
        f"/_control/sessions/{name}/inbound", json={"from": "5511900000000", "body": "hi"}
    )
    assert await sandbox.fake.state.dispatcher.drain(2)
    assert {h.envelope["event"] for h in sandbox.receiver.hooks} == {"session.status"}


async def test_qr_rotation_by_control_emits_scan_qr_code(sandbox: Sandbox) -> None:
    name = "rotating"
    await sandbox.create(name)
    await sandbox.receiver.wait_status(name, "SCAN_QR_CODE")
    first = (await sandbox.api.get(f"/api/{name}/auth/qr?format=raw")).json()["value"]
    rotated = await sandbox.api.post(f"/_control/sessions/{name}/rotate-qr")
    assert rotated.status_code == 200
    await sandbox.receiver.wait_status(name, "SCAN_QR_CODE", count=2)
    second = (await sandbox.api.get(f"/api/{name}/auth/qr?format=raw")).json()["value"]
    assert second != first and rotated.json()["qrValue"] == second
    stale = await sandbox.api.post(f"/_control/sessions/{name}/scan", json={"value": first})
    assert stale.status_code == 409


async def test_qr_rotates_on_its_own_interval(receiver: Receiver) -> None:
    app = build_sandbox_app(
        SandboxSettings(
            waha=WahaSettings(api_key=API_KEY, start_delay_seconds=0, qr_rotation_seconds=0.05)
        )
    )
    fake: WahaFake = app.state.fakes["/waha"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sandbox/waha",
        headers={"X-Api-Key": API_KEY},
    ) as client:
        await Sandbox(api=client, fake=fake, receiver=receiver, app=app).create("auto")
        hooks = await receiver.wait_status("auto", "SCAN_QR_CODE", count=3)
        assert len({h.envelope["id"] for h in hooks}) == len(hooks)
    await fake.aclose()


async def test_injected_faults_answer_in_order_then_clear(sandbox: Sandbox) -> None:
    api = sandbox.api
    await api.post("/_control/faults", json={"status": 429, "retryAfter": 7})
    limited = await api.get("/api/sessions")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert limited.json()["statusCode"] == 429
    assert (await api.get("/api/sessions")).status_code == 200

    await api.post("/_control/faults", json={"status": 500, "count": 2, "path": "/api/sendText"})
    assert (await api.get("/api/sessions")).status_code == 200  # other paths unaffected
    for _ in range(2):
        body = {"session": "s", "chatId": "1@c.us", "text": "x"}
        assert (await api.post("/api/sendText", json=body)).status_code == 500
    assert (await api.get("/_control/faults")).json()["faults"] == []

    await api.post("/_control/faults", json={"status": 503})
    assert (await api.get("/api/sessions", headers={"X-Api-Key": "wrong"})).status_code == 503

    await api.post("/_control/latency", json={"ms": 60})
    started = time.monotonic()
    await api.get("/api/sessions")
    assert time.monotonic() - started >= 0.05
    log = (await api.get("/_control/requests")).json()
    assert [e["status"] for e in log[:2]] == [429, 200]


async def test_webhooks_are_retried_with_the_same_body(sandbox: Sandbox) -> None:
    answers = {"STARTING": [500, 502]}  # STARTING fails twice, then succeeds

    def reply(hook: Hook) -> int:
        pending = answers.get(hook.envelope["payload"]["status"], [])
        return pending.pop(0) if pending else 200

    sandbox.receiver.reply = reply
    await sandbox.create("retry", retries={"policy": "linear", "delaySeconds": 2, "attempts": 3})
    await sandbox.receiver.wait_status("retry", "STARTING", count=3)
    assert await sandbox.fake.state.dispatcher.drain(5)
    deliveries = (await sandbox.api.get("/_control/webhooks", params={"session": "retry"})).json()
    starting = [d for d in deliveries if d["envelope"]["payload"]["status"] == "STARTING"]
    assert [(d["attempt"], d["statusCode"]) for d in starting] == [(1, 500), (2, 502), (3, 200)]
    assert len({d["eventId"] for d in starting}) == 1
    assert len({d["requestId"] for d in starting}) == 3
    raws = {h.raw for h in await sandbox.receiver.wait_status("retry", "STARTING")}
    assert len(raws) == 1  # identical bytes, identical HMAC on every attempt


async def test_drop_restart_and_logout_follow_the_auth_state(sandbox: Sandbox) -> None:
    api, receiver, name = sandbox.api, sandbox.receiver, "tenant42-line1"
    await sandbox.connected(name)

    await api.post(f"/_control/sessions/{name}/drop", json={"status": "FAILED"})
    await receiver.wait_status(name, "FAILED")
    await api.post(f"/api/sessions/{name}/restart")
    await receiver.wait_status(name, "WORKING", count=2)  # auth kept: back without a scan

    await api.post(f"/_control/sessions/{name}/drop", json={"auth": "broken"})
    await api.post(f"/api/sessions/{name}/restart")
    await receiver.wait_status(name, "FAILED", count=3)  # the drop, then the failed restart
    await api.post(f"/api/sessions/{name}/logout")
    await api.post(f"/api/sessions/{name}/start")
    await receiver.wait_status(name, "SCAN_QR_CODE", count=2)


async def test_stop_keeps_auth_and_hides_from_default_list(sandbox: Sandbox) -> None:
    api, name = sandbox.api, "tenant42-line1"
    await sandbox.connected(name)
    stopped = await api.post(f"/api/sessions/{name}/stop")
    assert stopped.json()["status"] == "STOPPED"
    await sandbox.receiver.wait_status(name, "STOPPED")
    assert (await api.get("/api/sessions")).json() == []
    assert [s["name"] for s in (await api.get("/api/sessions?all=true")).json()] == [name]
    me = await api.get(f"/api/sessions/{name}/me")
    assert me.status_code == 200 and me.content == b""  # NestJS renders null as no body
    await api.post(f"/api/sessions/{name}/start")
    await sandbox.receiver.wait_status(name, "WORKING", count=2)


async def test_send_text_needs_working_and_valid_body(sandbox: Sandbox) -> None:
    await sandbox.create("idle", start=False)
    early = await sandbox.api.post(
        "/api/sendText", json={"session": "idle", "chatId": "1@c.us", "text": "x"}
    )
    assert early.status_code == 422
    assert early.json() == {
        "error": "Session status is not as expected. Try again later or restart the session",
        "session": "idle",
        "status": "STOPPED",
        "expected": ["WORKING"],
    }
    invalid = await sandbox.api.post("/api/sendText", json={"session": "idle"})
    assert invalid.status_code == 400
    assert sorted(invalid.json()["message"]) == ["chatId must be a string", "text must be a string"]


async def test_pairing_code_and_check_exists(sandbox: Sandbox) -> None:
    api, name = sandbox.api, "paired"
    await sandbox.create(name)
    await sandbox.receiver.wait_status(name, "SCAN_QR_CODE")
    code = await api.post(f"/api/{name}/auth/request-code", json={"phoneNumber": "5511999990000"})
    assert code.status_code == 201 and re.match(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$", code.json()["code"])
    wrong = await api.post(f"/_control/sessions/{name}/scan", json={"code": "AAAA-AAAA"})
    assert wrong.status_code == 409
    ok = await api.post(f"/_control/sessions/{name}/scan", json={"code": code.json()["code"]})
    assert ok.status_code == 200

    # A Brazilian mobile registered in its legacy 8-digit form.
    await api.post(
        "/_control/contacts", json={"phone": "5511987654321", "chatId": "551187654321@c.us"}
    )
    legacy = await api.get(
        "/api/contacts/check-exists", params={"phone": "+55 11 98765-4321", "session": name}
    )
    assert legacy.json() == {"numberExists": True, "chatId": "551187654321@c.us"}
    await api.post("/_control/contacts", json={"phone": "5511900000001", "exists": False})
    missing = await api.get(
        "/api/contacts/check-exists", params={"phone": "5511900000001", "session": name}
    )
    assert missing.json() == {"numberExists": False, "chatId": None}


async def test_reset_forgets_everything(sandbox: Sandbox) -> None:
    await sandbox.connected("a")
    assert (await sandbox.api.post("/_control/reset")).status_code == 200
    assert (await sandbox.api.get("/api/sessions?all=true")).json() == []
    assert (await sandbox.api.get("/_control/webhooks")).json() == []
    assert (await sandbox.api.get("/_control/requests")).json() == [
        {"method": "GET", "path": "/api/sessions", "query": "all=true", "status": 200, "at": _ANY}
    ]


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


_ANY = _Any()
