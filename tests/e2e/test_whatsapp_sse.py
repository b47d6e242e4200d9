"""A browser's view of WhatsApp: follow the status over Server-Sent Events from connect to
connected, with WAHA played by the sandbox and its webhooks going through the real sidecar.
The JSON is the spec's (section 1.5): `201` and `"status": "qr_pending"` on start, then
`"status": "connected"` on the status endpoint once the phone scanned the QR.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from server.auth.caller import Role
from tests.support.databases import isolated_database_fixture, isolated_owner_engine_fixture
from tests.support.whatsapp_stack import Stack, wait_waha_status, whatsapp_stack

WATCH = "/api/v1/conexoes/whatsapp/status:watch"
EVENTS = "/api/v1/conexoes/eventos:watch"
START = "/api/v1/conexoes/whatsapp/iniciar"
STATUS = "/api/v1/conexoes/whatsapp/status"
QR_CODE = "/api/v1/conexoes/whatsapp/qr-code"
CONNECTED = "connected"
QR_PENDING = "qr_pending"


# A database of its own: other modules' servers run workers that could claim our jobs.
database = isolated_database_fixture()
owner_engine = isolated_owner_engine_fixture()


@pytest_asyncio.fixture(scope="module")
async def stack(database: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    data_dir = str(tmp_path_factory.mktemp("whatsapp-sse"))
    async with whatsapp_stack(database.owner_url, data_dir) as running:
        yield running


async def _sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event name, parsed data) per SSE event; comments (keep-alives) are skipped."""
    name, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line.startswith("event:"):
            name = line[6:].strip()


async def test_status_over_sse_from_connect_to_connected(
    stack: Stack, make_tenant: Any, make_caller: Any
) -> None:
    caller = make_caller(await make_tenant(), Role.MEMBER)
    auth = {"authorization": f"Bearer {stack.server.token(caller)}"}
    seen: list[str] = []
    async with (
        httpx.AsyncClient(base_url=stack.sidecar_url, timeout=20.0) as http,
        http.stream("GET", WATCH, headers={**auth, "accept": "text/event-stream"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(response)
        name, first = await anext(events)
        assert name == "message" and "snapshot" in first  # the current state comes first

        started = await http.post(START, json={}, headers=auth)
        assert started.status_code == 201, started.text
        assert started.json()["status"] == QR_PENDING
        assert set(started.json()) == {"id", "session_name", "status", "message"}
        session_name = started.json()["session_name"]

        scanned = False
        async for name, item in events:
            assert name == "message", item  # an `error` event would end the stream
            session = item.get("session")
            if session is None:  # heartbeat
                continue
            assert session["session_name"] == session_name
            seen.append(session["status"])
            if session["status"] == QR_PENDING and not scanned:
                # The phone scans the QR once WAHA shows one.
                await wait_waha_status(stack, session_name, "SCAN_QR_CODE")
                qr = await http.get(QR_CODE, headers=auth)
                assert qr.status_code == 200, qr.text
                assert qr.json()["status"] == QR_PENDING
                assert qr.json()["qr_code"].startswith("data:image/png;base64,")
                await stack.control(f"sessions/{session_name}/scan", {"phone": "5511988887777"})
                scanned = True
            if session["status"] == CONNECTED:
                assert session["phone_number"] == "+5511988887777"
                break
        status = await http.get(STATUS, headers=auth)
    assert seen[0] == QR_PENDING
    assert seen[-1] == CONNECTED
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["status"] == CONNECTED and body["phone_number"] == "+5511988887777"
    assert body["conectado_em"] and body["id"] and body["motivo_desconexao"] == "unspecified"


async def test_events_stream_speaks_wire_strings_inside_payloads(
    stack: Stack, make_tenant: Any, make_caller: Any
) -> None:
    """WatchEvents over NDJSON: the event's kind and its payload (the session, built by the
    server as JSON) use the same words as the rest of the API."""
    caller = make_caller(await make_tenant(), Role.MEMBER)
    auth = {"authorization": f"Bearer {stack.server.token(caller)}"}
    headers = {**auth, "accept": "application/x-ndjson"}
    async with (
        httpx.AsyncClient(base_url=stack.sidecar_url, timeout=20.0) as http,
        http.stream("GET", EVENTS, headers=headers) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert "snapshot" in json.loads(await anext(lines))["result"]
        started = await http.post(START, json={}, headers=auth)
        assert started.status_code == 201, started.text
        async for line in lines:
            event = json.loads(line)["result"].get("event")
            if event is None:  # heartbeat
                continue
            assert event["kind"] == "whatsapp_status"
            assert event["payload"]["status"] == QR_PENDING  # not WAHA_SESSION_STATUS_...
            break


async def test_ndjson_when_asked(stack: Stack, make_tenant: Any, make_caller: Any) -> None:
    caller = make_caller(await make_tenant(), Role.ADMIN)
    headers = {
        "authorization": f"Bearer {stack.server.token(caller)}",
        "accept": "application/x-ndjson",
    }
    async with (
        httpx.AsyncClient(base_url=stack.sidecar_url, timeout=20.0) as http,
        http.stream("GET", WATCH, params={"all_sessions": "true"}, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        first = json.loads(await anext(response.aiter_lines()))
        assert first["result"]["snapshot"]["sessions"] == []


async def test_watch_without_a_token_is_401_before_streaming(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.sidecar_url, timeout=20.0) as http:
        response = await http.get(WATCH, headers={"accept": "text/event-stream"})
    assert response.status_code == 401
    assert response.json()["code"] == 16  # google.rpc.Code.UNAUTHENTICATED
