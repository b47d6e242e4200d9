"""Server-streaming RPCs as SSE and NDJSON, over a real uvicorn socket."""

from __future__ import annotations

import asyncio
import json

import httpx

from .servicer import Recorder

WATCH = "/api/v1/things/t1:watch"


def _sse_events(text: str) -> list[tuple[str, str]]:
    """(event, data) pairs, plus ("comment", ...) for keep-alives, in arrival order."""
    events: list[tuple[str, str]] = []
    for block in text.split("\n\n"):
        if not block:
            continue
        if block.startswith(":"):
            events.append(("comment", block[1:].strip()))
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event", "message"), fields["data"]))
    return events


async def test_sse_events_arrive_in_order_and_end(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url) as http:
        response = await http.get(WATCH, params={"count": 3})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = _sse_events(response.text)
    assert [kind for kind, _ in events] == ["message"] * 3
    assert [json.loads(data)["display_name"] for _, data in events] == ["0", "1", "2"]
    assert json.loads(events[0][1])["thing_id"] == "t1"
    assert json.loads(events[0][1])["color"] == "unspecified"  # enums as wire strings


async def test_sse_error_event_then_end(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url) as http:
        response = await http.get(WATCH, params={"count": 1, "fail_at_end": "true"})
    events = _sse_events(response.text)
    assert [kind for kind, _ in events] == ["message", "error"]
    status = json.loads(events[1][1])
    assert status["code"] == 14 and status["message"] == "provider down"
    assert status["details"][0]["reason"] == "TEST_REASON"
    assert status["details"][0]["metadata"]["color"] == "red"  # an enum name, as a wire string


async def test_sse_keep_alive_comments_while_idle(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url) as http:
        response = await http.get(WATCH, params={"count": 2, "idle_ms": 700})  # keepalive 0.2 s
    events = _sse_events(response.text)
    assert events[0][0] == "message" and events[-1][0] == "message"
    assert ("comment", "keep-alive") in events[1:-1]


async def test_failure_before_first_message_is_a_plain_http_error(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url) as http:
        response = await http.get(WATCH, params={"fail_first": 7})
    assert response.status_code == 403
    assert response.json()["code"] == 7


async def test_ndjson_variant(live_url: str) -> None:
    headers = {"Accept": "application/x-ndjson"}
    async with httpx.AsyncClient(base_url=live_url, headers=headers) as http:
        response = await http.get(WATCH, params={"count": 2, "fail_at_end": "true"})
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["result"]["display_name"] for line in lines[:2]] == ["0", "1"]
    assert lines[2]["error"]["code"] == 14
    assert len(lines) == 3


async def test_client_disconnect_cancels_the_call(live_url: str, recorder: Recorder) -> None:
    recorder.cancelled.clear()
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        http.stream("GET", WATCH, params={"count": 10_000, "idle_ms": 100}) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break  # leave after the first event
    await asyncio.wait_for(recorder.cancelled.wait(), timeout=5)


async def test_streaming_forwards_authorization(live_url: str, recorder: Recorder) -> None:
    headers = {"Authorization": "Bearer stream-token"}
    async with httpx.AsyncClient(base_url=live_url, headers=headers) as http:
        await http.get(WATCH, params={"count": 1})
    assert recorder.last.method == "WatchThing"
    assert recorder.last.metadata["authorization"] == "Bearer stream-token"
    assert recorder.last.time_remaining is None  # streams have no default deadline
