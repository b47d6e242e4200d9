"""The OpenAPI document: complete, derived from the descriptors, and usable by schemathesis."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import ignored_auth, not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from webhooks_http.gateway import collect_rules


async def _document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_lists_every_annotated_route(
    client: httpx.AsyncClient, things_pb2: ModuleType
) -> None:
    document = await _document(client)
    assert document["openapi"] == "3.1.0"
    listed = {(path, verb.upper()) for path, item in document["paths"].items() for verb in item}
    expected = {
        (r.template.openapi_path, r.method)
        for r in collect_rules([things_pb2.DESCRIPTOR], prefix="/api/")
    }
    assert listed == expected
    assert "/internal/ping" not in document["paths"]
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert "GetThing" in ids and "GetThing_1" in ids  # the additional binding
    assert document["components"]["securitySchemes"]["bearerAuth"]["bearerFormat"] == "JWT"


async def test_schemas_follow_proto3_json(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    schemas = document["components"]["schemas"]
    thing = schemas["gwtest.v1.Thing"]["properties"]
    assert thing["size_bytes"]["type"] == "string" and thing["size_bytes"]["format"] == "int64"
    assert thing["color"] == {"type": "string", "enum": ["unspecified", "red", "blue"]}
    assert thing["shade"]["enum"] == ["SHADE_UNSPECIFIED", "SHADE_DARK"]  # no wire strings
    assert thing["color_by_tag"]["additionalProperties"]["enum"][1] == "red"
    # Unset message fields are printed as null.
    assert thing["create_time"] == {
        "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]
    }
    assert thing["extra"]["anyOf"][0]["type"] == "object"
    assert thing["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert thing["tags"] == {"type": "array", "items": {"type": "string"}}
    assert thing["thing_id"]["readOnly"] is True
    assert thing["secret"]["writeOnly"] is True
    assert "one of `contact`" in thing["email"]["description"]
    assert thing["owner"]["anyOf"][0]["$ref"] == "#/components/schemas/gwtest.v1.Owner"

    list_op = document["paths"]["/api/v1/things"]["get"]
    params = {p["name"]: p for p in list_op["parameters"]}
    assert params["tags"]["schema"]["type"] == "array"
    assert params["owner.display_name"]["in"] == "query"
    assert "owner" not in params
    update = document["paths"]["/api/v1/things/{thing_id}"]["patch"]
    assert update["parameters"][0]["in"] == "path"
    assert update["parameters"][0]["name"] == "thing_id"  # {thing.thing_id}, flattened
    assert "update_mask" in {p["name"] for p in update["parameters"]}
    body = update["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("gwtest.v1.Thing")
    error = list_op["responses"]["default"]["content"]["application/json"]["schema"]
    assert error["$ref"].endswith("google.rpc.Status")
    watch = document["paths"]["/api/v1/things/{thing_id}:watch"]["get"]["responses"]["200"]
    assert set(watch["content"]) == {"text/event-stream", "application/x-ndjson"}
    message_event = watch["content"]["text/event-stream"]["schema"]["anyOf"][0]
    assert message_event["properties"]["data"]["contentSchema"]["$ref"].endswith("v1.Thing")


async def test_success_status_and_redirects(client: httpx.AsyncClient) -> None:
    paths = (await _document(client))["paths"]
    create = paths["/api/v1/things"]["post"]["responses"]
    assert set(create) == {"201", "default"}
    assert create["201"]["content"]["application/json"]["schema"]["$ref"].endswith("v1.Thing")
    callback = paths["/api/v1/callbacks/thing"]["get"]
    assert callback["security"] == []  # the provider sends the browser, without our token
    assert set(callback["responses"]) == {"302", "429"}
    redirect = callback["responses"]["302"]
    assert "content" not in redirect and redirect["headers"]["Location"]["required"] is True


async def test_schemathesis_runs_against_the_live_gateway(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url) as http:
        document = (await http.get("/api/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12

    # These fail on purpose when asked to (Fail's `code`, WatchThing's `fail_first`, Slow's
    # `sleep_ms` beyond the deadline).
    deliberate = {"/api/v1/failures", "/api/v1/things/{thing_id}:watch", "/api/v1/slow"}

    def run(operation: Any) -> None:
        excluded = [ignored_auth]  # the test server does no auth; the real one's interceptor does
        if operation.path in deliberate:
            excluded += [not_a_server_error, positive_data_acceptance]

        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=live_url, timeout=10, allow_redirects=False)
            case.validate_response(response, excluded_checks=excluded)

        check()

    for operation in operations:
        # Blocking HTTP calls in a worker thread: the event loop keeps serving them.
        await asyncio.to_thread(run, operation)
