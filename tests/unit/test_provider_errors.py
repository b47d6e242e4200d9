"""Provider failures -> ProviderError subclasses: the translation table, and real HTTP failures."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from sandbox.faults import FaultServer, Reply, run_fault_server
from server.errors import DomainError, ProviderUnavailable, ResourceExhausted, TokenExpired
from server.providers import (
    ProviderAuthError,
    ProviderError,
    ProviderNetworkError,
    ProviderPermissionDenied,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    error_from_response,
    parse_retry_after,
    raise_for_provider_response,
    translate_errors,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _response(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    request = httpx.Request("POST", "https://provider.test/call")
    if isinstance(body, bytes):
        return httpx.Response(status, content=body, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def _graph(code: int, subcode: int | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": "graph says no",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbC123",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": {**error, **extra}}


def _google(code: int, reason: str) -> dict[str, Any]:
    return {
        "error": {
            "errors": [{"domain": "usageLimits", "reason": reason, "message": reason}],
            "code": code,
            "message": reason,
        }
    }


RL, SERVER, TIMEOUT = ProviderRateLimited, ProviderServerError, ProviderTimeout
AUTH, PERM, REJECTED = ProviderAuthError, ProviderPermissionDenied, ProviderRejected
RETRY, FINAL = True, False
WAHA_404 = {"statusCode": 404, "message": "Session not found", "error": "Not Found"}
WAHA_401 = {"message": "Unauthorized", "statusCode": 401}
WAHA_422 = {"statusCode": 422, "message": "Session status is not as expected"}
IG_OAUTH = {"error_type": "OAuthException", "code": 400, "error_message": "Invalid code"}
GRANT = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
G_DENIED = {"error": {"code": 403, "message": "no", "status": "PERMISSION_DENIED"}}
G_EXHAUSTED = {"error": {"code": 429, "message": "x", "status": "RESOURCE_EXHAUSTED"}}
RA = "Retry-After"

# case, status, body, headers -> class, retryable, retry_after
Row = tuple[str, int, Any, dict[str, str] | None, type[ProviderError], bool, float | None]
TABLE: list[Row] = [
    # plain HTTP statuses (the spec's retryable / non-retryable lists)
    ("429 retry-after", 429, None, {RA: "3"}, RL, RETRY, 3.0),
    ("429 no header", 429, None, None, RL, RETRY, None),
    ("500", 500, None, None, SERVER, RETRY, None),
    ("502 html body", 502, b"<html>Bad Gateway</html>", None, SERVER, RETRY, None),
    ("503 retry-after", 503, None, {RA: "10"}, SERVER, RETRY, 10.0),
    ("504", 504, None, None, SERVER, RETRY, None),
    ("501 never will", 501, None, None, REJECTED, FINAL, None),
    ("408", 408, None, None, TIMEOUT, RETRY, None),
    ("400", 400, {"message": "bad"}, None, REJECTED, FINAL, None),
    ("401", 401, None, None, AUTH, FINAL, None),
    ("403", 403, None, None, AUTH, FINAL, None),
    ("404", 404, None, None, REJECTED, FINAL, None),
    ("409", 409, None, None, REJECTED, FINAL, None),
    ("422", 422, None, None, REJECTED, FINAL, None),
    ("302 redirect", 302, None, None, REJECTED, FINAL, None),
    # Graph API envelope: the code beats the HTTP status
    ("graph 190 expired", 400, _graph(190, 463), None, AUTH, FINAL, None),
    ("graph 190 on 401", 401, _graph(190, 460), None, AUTH, FINAL, None),
    ("graph 102 session", 400, _graph(102), None, AUTH, FINAL, None),
    ("graph 4 app", 400, _graph(4), None, RL, RETRY, None),
    ("graph 17 user", 403, _graph(17), None, RL, RETRY, None),
    ("graph 32 page", 400, _graph(32), None, RL, RETRY, None),
    ("graph 613 call", 400, _graph(613), None, RL, RETRY, None),
    ("graph 613 retry-after", 400, _graph(613), {RA: "30"}, RL, RETRY, 30.0),
    ("graph 80004 buc", 400, _graph(80004), None, RL, RETRY, None),
    ("graph 10", 403, _graph(10), None, PERM, FINAL, None),
    ("graph 200", 400, _graph(200), None, PERM, FINAL, None),
    ("graph 299", 400, _graph(299), None, PERM, FINAL, None),
    ("graph 100 param", 400, _graph(100), None, REJECTED, FINAL, None),
    ("graph 1 transient", 400, _graph(1), None, SERVER, RETRY, None),
    ("graph 2 unavailable", 500, _graph(2), None, SERVER, RETRY, None),
    ("graph unknown code", 400, _graph(368), None, REJECTED, FINAL, None),
    ("graph is_transient", 400, _graph(9999, is_transient=True), None, SERVER, RETRY, None),
    # Google envelope: the reason beats the status (rate limits arrive as 403)
    ("g rateLimit", 403, _google(403, "rateLimitExceeded"), None, RL, RETRY, None),
    ("g userRateLimit", 429, _google(429, "userRateLimitExceeded"), None, RL, RETRY, None),
    ("g quota", 403, _google(403, "quotaExceeded"), None, RL, RETRY, 3600.0),
    ("gmail daily", 403, _google(403, "dailyLimitExceeded"), None, RL, RETRY, 3600.0),
    ("g forbidden", 403, _google(403, "forbidden"), None, PERM, FINAL, None),
    ("g nonOrganizer", 403, _google(403, "forbiddenForNonOrganizer"), None, PERM, FINAL, None),
    ("g insufficient", 403, _google(403, "insufficientPermissions"), None, PERM, FINAL, None),
    ("g authError", 401, _google(401, "authError"), None, AUTH, FINAL, None),
    ("g backendError", 503, _google(503, "backendError"), None, SERVER, RETRY, None),
    ("g notFound", 404, _google(404, "notFound"), None, REJECTED, FINAL, None),
    ("g fullSync", 410, _google(410, "fullSyncRequired"), None, REJECTED, FINAL, None),
    ("g status only", 403, G_DENIED, None, PERM, FINAL, None),
    ("g status exhausted", 429, G_EXHAUSTED, None, RL, RETRY, None),
    # OAuth token endpoint: the grant is dead although the status is 400
    ("oauth invalid_grant", 400, GRANT, None, AUTH, FINAL, None),
    ("oauth invalid_client", 401, {"error": "invalid_client"}, None, AUTH, FINAL, None),
    ("oauth invalid_request", 400, {"error": "invalid_request"}, None, REJECTED, FINAL, None),
    # WAHA (NestJS) and Instagram token endpoint shapes
    ("waha 404 session", 404, WAHA_404, None, REJECTED, FINAL, None),
    ("waha 422 not working", 422, WAHA_422, None, REJECTED, FINAL, None),
    ("waha 401 api key", 401, WAHA_401, None, AUTH, FINAL, None),
    ("waha 500", 500, {"statusCode": 500, "message": "boom"}, None, SERVER, RETRY, None),
    ("instagram oauth 400", 400, IG_OAUTH, None, REJECTED, FINAL, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "retryable", "retry_after"),
    [pytest.param(*row[1:], id=row[0]) for row in TABLE],
)
def test_translation_table(
    status: int,
    body: Any,
    headers: dict[str, str] | None,
    cls: type[ProviderError],
    retryable: bool,
    retry_after: float | None,
) -> None:
    err = error_from_response("prov", _response(status, body, headers), now=NOW)
    assert type(err) is cls
    assert err.retryable is retryable
    assert err.retry_after == retry_after
    assert err.status_code == status
    assert err.provider == "prov"
    assert err.metadata["provider"] == "prov"


def test_graph_details_are_kept() -> None:
    err = error_from_response("meta_graph", _response(400, _graph(190, 463)))
    assert (err.provider_code, err.provider_subcode, err.fbtrace_id) == (190, 463, "AbC123")
    assert "graph says no" in err.message
    assert err.metadata["fbtrace_id"] == "AbC123"


def test_google_reason_becomes_provider_code() -> None:
    err = error_from_response("google_calendar", _response(403, _google(403, "rateLimitExceeded")))
    assert err.provider_code == "rateLimitExceeded"


def test_waha_message_list_is_joined() -> None:
    body = {"statusCode": 400, "message": ["chatId must be a string", "text missing"]}
    err = error_from_response("waha", _response(400, body))
    assert "chatId must be a string; text missing" in err.message


def test_long_provider_message_is_truncated() -> None:
    err = error_from_response("waha", _response(400, {"message": "x" * 5000}))
    assert len(err.message) <= 300


def test_business_use_case_header_gives_wait_for_graph_throttling() -> None:
    usage = '{"123": [{"type": "ads_management", "estimated_time_to_regain_access": 5}]}'
    err = error_from_response(
        "meta_graph", _response(400, _graph(80004), {"X-Business-Use-Case-Usage": usage})
    )
    assert isinstance(err, ProviderRateLimited)
    assert err.retry_after == 300.0


def test_retry_after_http_date() -> None:
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    err = error_from_response("waha", _response(503, None, {"Retry-After": later}), now=NOW)
    assert err.retry_after == 90.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-5", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        (format_datetime(NOW + timedelta(minutes=2), usegmt=True), 120.0),
        (format_datetime(NOW - timedelta(minutes=2), usegmt=True), 0.0),
        ("Sun, 01 Jun 2025 12:00:30 GMT", 30.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


UNAVAILABLE, FAILED = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("cls", "base", "code", "reason"),
    [
        (ProviderTimeout, ProviderUnavailable, UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        (ProviderNetworkError, ProviderUnavailable, UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        (ProviderServerError, ProviderUnavailable, UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        (ProviderRateLimited, ResourceExhausted, EXHAUSTED, "RATE_LIMITED"),
        (ProviderAuthError, TokenExpired, FAILED, "TOKEN_EXPIRED"),
        (ProviderRejected, DomainError, FAILED, "PROVIDER_REJECTED"),
        (ProviderPermissionDenied, DomainError, FAILED, "PROVIDER_PERMISSION_DENIED"),
    ],
)  # fmt: skip
def test_each_class_maps_to_the_domain_tree(
    cls: type[ProviderError], base: type[DomainError], code: grpc.StatusCode, reason: str
) -> None:
    err = cls("boom", provider="waha", status_code=500)
    assert isinstance(err, base) and isinstance(err, ProviderError)
    assert (err.grpc_code, err.reason) == (code, reason)
    assert err.outage is (cls in (ProviderTimeout, ProviderNetworkError, ProviderServerError))


def test_raise_for_provider_response_passes_success_through() -> None:
    ok = _response(201, {"id": "1"})
    assert raise_for_provider_response("waha", ok) is ok
    with pytest.raises(ProviderRateLimited):
        raise_for_provider_response("waha", _response(429))


# --- translate_errors over real sockets --------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def faults() -> AsyncIterator[FaultServer]:
    async with run_fault_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> None:
    if "faults" in request.fixturenames:
        request.getfixturevalue("faults").reset()


async def _call(server: FaultServer, provider: str = "meta_graph", read_s: float = 10.0) -> Any:
    # Generous unless the test is about the timeout: a loaded machine must not turn a scripted
    # error into a timeout.
    client = httpx.AsyncClient(base_url=server.url, timeout=read_s)
    async with client, translate_errors(provider):
        response = await client.post("/call", params={"access_token": "SECRET-TOKEN"})
        return raise_for_provider_response(provider, response).json()


async def test_read_timeout_becomes_provider_timeout(faults: FaultServer) -> None:
    faults.script([Reply.slow(0.6)], path="/call")
    with pytest.raises(ProviderTimeout) as info:
        await _call(faults, read_s=0.2)
    assert isinstance(info.value.__cause__, httpx.TimeoutException)
    assert info.value.retryable and info.value.outage
    assert "SECRET-TOKEN" not in str(info.value)


async def test_connection_reset_becomes_network_error(faults: FaultServer) -> None:
    faults.script([Reply.connection_reset()], path="/call")
    with pytest.raises(ProviderNetworkError) as info:
        await _call(faults)
    assert isinstance(info.value.__cause__, httpx.ReadError | httpx.RemoteProtocolError)
    assert info.value.retryable


async def test_connection_refused_becomes_network_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with httpx.AsyncClient(timeout=1) as client:
        with pytest.raises(ProviderNetworkError) as info:
            async with translate_errors("waha"):
                await client.get(f"http://127.0.0.1:{port}/api/sessions")
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_graph_error_over_http(faults: FaultServer) -> None:
    faults.script([Reply.graph_error(190, subcode=463)], path="/call")
    with pytest.raises(ProviderAuthError) as info:
        await _call(faults)
    assert info.value.provider_subcode == 463


async def test_rate_limit_over_http(faults: FaultServer) -> None:
    faults.script([Reply.rate_limited(7)], path="/call")
    with pytest.raises(ProviderRateLimited) as info:
        await _call(faults)
    assert info.value.retry_after == 7.0


async def test_http_status_error_from_raise_for_status_is_translated(faults: FaultServer) -> None:
    faults.script([Reply.google_error(403, "userRateLimitExceeded")], path="/call")
    async with httpx.AsyncClient(base_url=faults.url) as client:
        with pytest.raises(ProviderRateLimited) as info:
            async with translate_errors("gmail"):
                (await client.post("/call")).raise_for_status()
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)


async def test_provider_errors_and_our_bugs_pass_through() -> None:
    original = ProviderRejected("no", provider="waha")
    with pytest.raises(ProviderRejected) as info:
        async with translate_errors("waha"):
            raise original
    assert info.value is original
    with pytest.raises(KeyError):
        async with translate_errors("waha"):
            raise KeyError("bug")
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.UnsupportedProtocol):
            async with translate_errors("waha"):
                await client.get("ftp://example.invalid/")
