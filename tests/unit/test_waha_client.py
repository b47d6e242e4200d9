"""The WAHA client against the WAHA fake (whole sandbox app over httpx's ASGITransport)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from sandbox.app import build_sandbox_app
from sandbox.settings import SandboxSettings, WahaSettings
from sandbox.waha import WahaFake
from server.errors import FailedPrecondition
from server.providers.errors import (
    PlatformCredentialsInvalid,
    ProviderRejected,
    ProviderServerError,
)
from server.providers.waha import (
    WahaClient,
    WahaCredentials,
    WahaMe,
    config_matches,
    is_not_found,
    session_config,
)

API_KEY = "unit-waha-key"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[WahaClient, WahaFake, httpx.AsyncClient]]:
    settings = SandboxSettings(
        waha=WahaSettings(
            api_key=API_KEY,
            start_delay_seconds=0.01,
            status_wait_seconds=2.0,
            webhook_retry_delay_scale=0.0001,
            webhook_timeout_seconds=0.5,
        )
    )
    app = build_sandbox_app(settings)
    fake: WahaFake = app.state.fakes["/waha"]
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    client = WahaClient(http, WahaCredentials("http://sandbox/waha", API_KEY, "hmac-key"))
    try:
        yield client, fake, http
    finally:
        await fake.aclose()
        await http.aclose()


def _config() -> dict[str, object]:
    return session_config(
        metadata={"organizacao_id": "org", "usuario_id": "user"},
        webhook_url="http://127.0.0.1:9/webhooks/waha/org",
        hmac_key="hmac-key",
    )


async def _wait_status(client: WahaClient, name: str, status: str) -> None:
    async with asyncio.timeout(5):
        while True:
            if (await client.get_session(name)).status == status:
                return
            await asyncio.sleep(0.01)


async def test_session_lifecycle_qr_pairing_and_send(sandbox) -> None:  # type: ignore[no-untyped-def]
    client, _fake, http = sandbox
    created = await client.create_session("wpp-unit", _config(), start=True)
    assert created.name == "wpp-unit"
    assert created.metadata == {"organizacao_id": "org", "usuario_id": "user"}
    assert config_matches(created, _config())
    await _wait_status(client, "wpp-unit", "SCAN_QR_CODE")
    assert await client.me("wpp-unit") is None  # empty body before WORKING

    qr = await client.qr("wpp-unit")
    assert qr.png.startswith(PNG_MAGIC) and qr.mimetype == "image/png"
    assert qr.value.startswith("2@")
    code = await client.request_code("wpp-unit", "5511988887777")
    assert len(code) == 9 and code[4] == "-"

    await http.post(
        "http://sandbox/waha/_control/sessions/wpp-unit/scan",
        json={"phone": "5511988887777", "pushName": "Ana"},
    )
    await _wait_status(client, "wpp-unit", "WORKING")
    session = await client.get_session("wpp-unit")
    assert session.me == WahaMe(id="5511988887777@c.us", push_name="Ana")
    assert await client.me("wpp-unit") == session.me

    sent = await client.send_text("wpp-unit", "5511977776666@c.us", "Ola!")
    assert sent.id.startswith("true_5511977776666@c.us_")
    assert sent.ack == 0
    rows = (await http.get("http://sandbox/waha/_control/messages")).json()
    assert [r["message"]["body"] for r in rows] == ["Ola!"]

    assert (await client.logout("wpp-unit")).name == "wpp-unit"
    await client.delete("wpp-unit")
    await client.delete("wpp-unit")  # idempotent
    with pytest.raises(ProviderRejected) as missing:
        await client.get_session("wpp-unit")
    assert is_not_found(missing.value)


async def test_create_twice_is_rejected_and_update_replaces_config(sandbox) -> None:  # type: ignore[no-untyped-def]
    client, _fake, _http = sandbox
    await client.create_session("wpp-twice", _config(), start=False)
    with pytest.raises(ProviderRejected) as exc:
        await client.create_session("wpp-twice", _config(), start=False)
    assert exc.value.status_code == 422
    other = session_config(metadata={"x": "y"}, webhook_url="http://h/w", hmac_key="k2")
    updated = await client.update_session("wpp-twice", other)
    assert not config_matches(updated, _config())
    assert (await client.start("wpp-twice")).status == "STARTING"
    assert (await client.stop("wpp-twice")).status == "STOPPED"


async def test_errors_are_translated(sandbox) -> None:  # type: ignore[no-untyped-def]
    client, _fake, http = sandbox
    bad_key = WahaClient(http, WahaCredentials("http://sandbox/waha", "wrong", "k"))
    # The key is the platform's: its refusal is a platform misconfiguration.
    with pytest.raises(PlatformCredentialsInvalid) as refused:
        await bad_key.get_session("anything")
    assert refused.value.reason == "PLATFORM_CREDENTIALS_INVALID" and not refused.value.retryable
    await http.post("http://sandbox/waha/_control/faults", json={"status": 503, "count": 1})
    with pytest.raises(ProviderServerError) as down:
        await client.get_session("anything")
    assert down.value.retryable
    with pytest.raises(ProviderRejected) as gone:
        await client.send_text("nope", "5511@c.us", "x")
    assert is_not_found(gone.value) and not gone.value.retryable


def test_credentials_must_be_complete() -> None:
    with pytest.raises(FailedPrecondition) as exc:
        WahaCredentials.from_platform({"base_url": "http://w", "api_key": "k"})
    assert exc.value.reason == "PLATFORM_NOT_CONFIGURED"
    creds = WahaCredentials.from_platform(
        {"base_url": "http://w/", "api_key": "k", "webhook_hmac_key": "h"}
    )
    assert creds.base_url == "http://w"
