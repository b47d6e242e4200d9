"""Unary RPCs through the gateway, against a real grpc.aio server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import httpx

from webhooks_http.gateway import build_gateway

from .conftest import MAX_BODY
from .servicer import Recorder

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


async def test_path_variables_and_most_specific_route(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    response = await client.get("/api/v1/things/t%2F1")
    assert response.status_code == 200
    assert response.json()["thing_id"] == "t/1"
    assert recorder.last.method == "GetThing"

    assert (await client.get("/api/v1/things/default")).json()["thing_id"] == "default"
    assert recorder.last.method == "GetDefaultThing"

    bound = await client.get("/api/v1/owners/o-9/things/t-2")  # additional binding
    assert bound.json()["thing_id"] == "t-2"
    assert bound.json()["display_name"] == "o-9"

    colon = await client.get("/api/v1/things/a:b")
    assert colon.json()["thing_id"] == "a:b"

    book = await client.get("/api/v1/shelves/s1/books/b%20two")
    assert book.json() == {"name": "shelves/s1/books/b two"}


async def test_custom_verb_with_body(client: httpx.AsyncClient, recorder: Recorder) -> None:
    response = await client.post("/api/v1/things/t7:retry", json={"reason": "again"})
    assert response.status_code == 200
    assert response.json()["thing_id"] == "t7"
    assert recorder.last.request.reason == "again"


async def test_unknown_route_method_and_filtered_prefix(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["code"] == 5
    wrong = await client.put("/api/v1/things/t1", json={})
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "DELETE, GET, PATCH"
    assert (await client.get("/internal/ping")).status_code == 404  # outside prefix_filter
    # A redirect RPC is the sidecar's route; the gateway itself does not serve it.
    assert (await client.get("/api/v1/callbacks/thing")).status_code == 302
    assert (await client.get("/webhooks/waha")).text == "webhook"  # sidecar routes still win


async def test_create_accepts_both_names_and_prints_defaults(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    body = {
        "thing": {
            "displayName": "Ana",
            "size_bytes": "9007199254740993",
            "color": "COLOR_BLUE",  # the proto name is accepted too
            "colorByTag": {"x": "red", "y": "COLOR_BLUE", "z": 0},
            "labels": {"k": "v"},
            "createTime": "2024-05-01T12:00:00Z",
            "extra": {"nested": [1, "x", "COLOR_RED"]},
            "secret": "s3cr3t",
            "email": "a@b.c",
        },
        "requestId": "req-1",
    }
    response = await client.post("/api/v1/things", json=body)
    assert response.status_code == 201, response.text  # the method's success_status
    sent = recorder.last.request
    assert sent.thing.display_name == "Ana"
    assert sent.thing.color == 2 and dict(sent.thing.color_by_tag) == {"x": 1, "y": 2, "z": 0}
    assert sent.thing.size_bytes == 2**53 + 1
    assert sent.thing.secret == "s3cr3t"
    assert sent.request_id == "req-1"
    out = response.json()
    assert out["display_name"] == "Ana"
    assert out["size_bytes"] == "9007199254740993"  # int64 as a string
    assert out["create_time"] == "2024-05-01T12:00:00Z"
    # Free-form JSON (Struct) holding a contract enum name shows its wire string.
    assert out["extra"] == {"nested": [1.0, "x", "red"]}
    assert out["email"] == "a@b.c"
    # Enums are written as their wire strings; one without them keeps its proto name.
    assert out["color"] == "blue"
    assert out["color_by_tag"] == {"x": "red", "y": "blue", "z": "unspecified"}
    assert out["shade"] == "SHADE_UNSPECIFIED"
    # An unset message field is present as null; the unset member of a oneof stays absent.
    assert out["owner"] is None and "phone" not in out
    # Fields without presence are always printed, in proto (snake_case) names.
    assert out["archived"] is False
    assert out["tags"] == []
    assert "secret" not in out  # INPUT_ONLY: never printed, not even empty
    assert out["score"] == 0
    assert "displayName" not in out


async def test_patch_with_field_mask_and_nested_path_variable(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    response = await client.patch(
        "/api/v1/things/t9",
        params={"update_mask": "displayName,size_bytes,owner.user_id"},
        json={"display_name": "New", "sizeBytes": 3},
    )
    assert response.status_code == 200, response.text
    sent = recorder.last.request
    assert sent.thing.thing_id == "t9"  # {thing.thing_id} from the path
    assert list(sent.update_mask.paths) == ["display_name", "size_bytes", "owner.user_id"]
    assert response.json()["thing_id"] == "t9"

    # No mask: the fields present in the body become the mask (grpc-gateway's rule).
    await client.patch("/api/v1/things/t9", json={"displayName": "x", "color": "COLOR_RED"})
    assert list(recorder.last.request.update_mask.paths) == ["display_name", "color"]


async def test_list_maps_the_query_string(client: httpx.AsyncClient, recorder: Recorder) -> None:
    query = [
        ("page_size", "10"),
        ("pageToken", "p2"),
        ("tags", "a"),
        ("tags", "b"),
        ("color", "red"),
        ("colors", "COLOR_BLUE"),
        ("colors", "1"),
        ("owner.display_name", "Ana"),
        ("owner.userId", "42"),
        ("created_after", "2024-01-01T00:00:00Z"),
        ("include_archived", "true"),
        ("min_size", "3"),
        ("maxSizeBytes", "9007199254740993"),
    ]
    response = await client.get("/api/v1/things", params=query)
    assert response.status_code == 200, response.text
    sent = recorder.last.request
    assert sent.page_size == 10 and sent.page_token == "p2"
    assert list(sent.tags) == ["a", "b"]
    assert sent.color == 1 and list(sent.colors) == [2, 1]
    assert sent.owner.display_name == "Ana" and sent.owner.user_id == 42
    assert sent.created_after.seconds == 1704067200
    assert sent.include_archived is True
    assert sent.min_size.value == 3
    assert sent.max_size_bytes == 2**53 + 1
    out = response.json()
    assert [t["thing_id"] for t in out["things"]] == ["a", "b"]
    assert out["things"][0]["color"] == "red"
    assert out["total_size"] == "9007199254740993"
    assert out["next_page_token"] == ""
    assert all("secret" not in thing for thing in out["things"])


async def test_response_body_selects_one_field(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/thing-items", params={"tags": "x"})
    assert [t["thing_id"] for t in response.json()] == ["x"]


async def test_delete_returns_empty_object(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/v1/things/t1")
    assert response.status_code == 200 and response.json() == {}


async def test_bad_input_is_400_without_calling_the_server(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    cases: list[tuple[str, str, dict[str, object], str]] = [
        ("POST", "/api/v1/things", {"content": b"{not json"}, ""),
        ("POST", "/api/v1/things", {"json": [1, 2]}, ""),
        ("POST", "/api/v1/things", {"json": {"thing": {"bogus": 1}}}, "thing.bogus"),
        ("POST", "/api/v1/things", {"json": {"thing": {"size_bytes": "abc"}}}, "thing.size_bytes"),
        ("POST", "/api/v1/things", {"json": {"thing": {"color": "PURPLE"}}}, "thing.color"),
        ("POST", "/api/v1/things", {"json": {}, "params": {"x": "1"}}, "x"),
        ("GET", "/api/v1/things", {"params": {"nope": "1"}}, "nope"),
        ("GET", "/api/v1/things", {"params": {"include_archived": "maybe"}}, "include_archived"),
        ("GET", "/api/v1/things", {"params": {"page_size": "ten"}}, "page_size"),
        (
            "GET",
            "/api/v1/things",
            {"params": [("page_size", "1"), ("page_size", "2")]},
            "page_size",
        ),
        ("GET", "/api/v1/things", {"params": {"owner": "x"}}, "owner"),
        ("GET", "/api/v1/things/t1", {"headers": {"x-request-timeout": "soon"}}, ""),
    ]
    for method, url, kwargs, field in cases:
        before = len(recorder.calls)
        response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 400, (url, kwargs, response.text)
        status = response.json()
        assert status["code"] == 3
        assert status["details"][0]["@type"] == BAD_REQUEST
        violation = status["details"][0]["field_violations"][0]
        if field:
            assert violation["field"] == field, (kwargs, violation)
        assert len(recorder.calls) == before, "the server must not be called"


async def test_oversize_body_is_413(client: httpx.AsyncClient, recorder: Recorder) -> None:
    before = len(recorder.calls)
    big = {"thing": {"display_name": "x" * MAX_BODY}}
    response = await client.post("/api/v1/things", json=big)
    assert response.status_code == 413
    assert response.json()["code"] == 8

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(MAX_BODY // 512 + 2):
            yield b" " * 512

    streamed = await client.post("/api/v1/things", content=chunks())
    assert streamed.status_code == 413
    assert len(recorder.calls) == before


async def test_authorization_and_request_id_are_forwarded(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    response = await client.get(
        "/api/v1/things/t1",
        headers={"Authorization": "Bearer abc.def.ghi", "X-Request-Id": "rid-7", "Cookie": "c=1"},
    )
    assert response.status_code == 200
    metadata = recorder.last.metadata
    assert metadata["authorization"] == "Bearer abc.def.ghi"
    assert metadata["x-request-id"] == "rid-7"
    assert "cookie" not in metadata
    assert response.headers["x-request-id"] == "rid-7"

    before = len(recorder.calls)
    garbled = await client.get("/api/v1/things/t1", headers={"Authorization": "Bearer \x01"})
    assert garbled.status_code == 401  # cannot be gRPC metadata: not signed in
    assert garbled.json()["code"] == 16
    assert len(recorder.calls) == before


async def test_deadline_propagation(client: httpx.AsyncClient, recorder: Recorder) -> None:
    default = await client.post("/api/v1/slow", json={})
    slack = 0.05  # gRPC rounds the timeout it sends on the wire
    assert 4.0 < default.json()["deadline_s"] <= 5.0 + slack  # default_deadline_s=5
    shorter = await client.post("/api/v1/slow", json={}, headers={"X-Request-Timeout": "1.5"})
    assert 1.0 < shorter.json()["deadline_s"] <= 1.5 + slack
    grpc_style = await client.post("/api/v1/slow", json={}, headers={"grpc-timeout": "800m"})
    assert 0.5 < grpc_style.json()["deadline_s"] <= 0.8 + slack
    longer = await client.post("/api/v1/slow", json={}, headers={"X-Request-Timeout": "60"})
    assert longer.json()["deadline_s"] <= 5.0 + slack  # a client may shorten, never extend

    late = await client.post(
        "/api/v1/slow", json={"sleep_ms": 1000}, headers={"X-Request-Timeout": "0.1"}
    )
    assert late.status_code == 504
    assert late.json()["code"] == 4


async def test_unknown_enum_string_is_400_listing_the_wire_strings(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    before = len(recorder.calls)
    bad_body = await client.post("/api/v1/things", json={"thing": {"color": "green"}})
    bad_query = await client.get("/api/v1/things", params={"colors": "COLOR_GREEN"})
    for response, field in ((bad_body, "thing.color"), (bad_query, "colors")):
        assert response.status_code == 400, response.text
        violations = [
            {"field": v["field"], "description": v["description"]}
            for detail in response.json()["details"]
            if detail["@type"] == BAD_REQUEST
            for v in detail["field_violations"]
        ]
        assert violations == [
            {"field": field, "description": "must be one of: unspecified, red, blue"}
        ]
    assert len(recorder.calls) == before  # the server was never called


async def test_gateway_alone_leaves_redirect_rpcs_to_the_sidecar(
    things_pb2: ModuleType, grpc_channel: Any
) -> None:
    gateway = build_gateway([things_pb2.DESCRIPTOR], grpc_channel)
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        response = await http.get("/api/v1/callbacks/thing")
    assert response.status_code == 404 and response.json()["code"] == 5
