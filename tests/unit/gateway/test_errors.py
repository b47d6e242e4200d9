"""Every gRPC status code through the gateway: HTTP status, Status JSON, rich details."""

from __future__ import annotations

import grpc
import httpx
import pytest

from webhooks_http.gateway import HTTP_STATUS_BY_CODE

EXPECTED = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}


def test_table_is_grpc_gateways() -> None:
    assert HTTP_STATUS_BY_CODE[grpc.StatusCode.OK] == 200
    assert {c.name: s for c, s in HTTP_STATUS_BY_CODE.items() if c.name != "OK"} == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_every_code_maps_to_its_http_status(client: httpx.AsyncClient, name: str) -> None:
    code = grpc.StatusCode[name].value[0]
    response = await client.post("/api/v1/failures", json={"code": code, "message": f"m-{name}"})
    assert response.status_code == EXPECTED[name]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code
    assert body["message"] == f"m-{name}"
    info = body["details"][0]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["reason"] == "TEST_REASON"
    assert info["domain"] == "gwtest.renove"
    assert info["metadata"] == {"thing": "t-1", "color": "red"}  # enum names as wire strings
    assert "retry-after" not in response.headers


async def test_bad_request_and_retry_info(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/failures",
        json={"code": 14, "message": "try later", "retryInfo": True, "bad_request": True},
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"  # 2.5 s, rounded up
    types = [d["@type"].rsplit(".", 1)[-1] for d in response.json()["details"]]
    assert types == ["ErrorInfo", "BadRequest", "RetryInfo"]
    bad = response.json()["details"][1]
    violation = bad["field_violations"][0]
    assert (violation["field"], violation["description"]) == (
        "thing.display_name",
        "must not be empty",
    )
    assert response.json()["details"][2]["retry_delay"] == "2.500s"


async def test_plain_abort_without_details(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/things/missing")
    assert response.status_code == 404
    assert response.json() == {"code": 5, "message": "no such thing", "details": []}
