"""CORS for the configured frontend origin only."""

from __future__ import annotations

import httpx

from .conftest import CORS_ORIGIN


async def test_preflight_for_allowed_origin(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/api/v1/things/t1",
        headers={
            "Origin": CORS_ORIGIN,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert "PATCH" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


async def test_preflight_for_other_origin_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/api/v1/things/t1",
        headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_simple_request_carries_cors_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/things/t1", headers={"Origin": CORS_ORIGIN})
    assert response.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert "retry-after" in response.headers["access-control-expose-headers"].lower()


async def test_credentialed_requests_allowed_for_the_configured_origin(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/things/t1", headers={"Origin": CORS_ORIGIN})
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_server_cookie_metadata_becomes_set_cookie(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/things/default")
    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == [
        "binding=n0nce; Path=/api; HttpOnly; SameSite=Lax"
    ]
    plain = await client.get("/api/v1/things/t1")
    assert "set-cookie" not in plain.headers
