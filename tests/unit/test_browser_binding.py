"""The OAuth browser binding: a state is accepted only with the cookie of the browser that
asked for it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from server.security.browser_binding import (
    MISMATCH,
    check_binding,
    new_binding,
    nonce_from_metadata,
)
from server.security.cipher import Keyring
from server.security.oauth_state import InvalidOAuthState, issue_state, open_state
from webhooks_http.oauth import binding_cookie, binding_metadata

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _state(keyring: Keyring, digest: str | None) -> str:
    token, _ = issue_state(
        keyring,
        provider="google",
        tenant_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        redirect_uri="https://api.test/cb",
        now=NOW,
        browser_digest=digest,
    )
    return token


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.parse(Keyring.generate_key_spec("k1"))


def test_the_browser_that_asked_passes(keyring: Keyring) -> None:
    binding = new_binding("google_calendar")
    state = open_state(keyring, _state(keyring, binding.digest), provider="google", now=NOW)
    check_binding(state, binding.nonce)  # no exception


@pytest.mark.parametrize("nonce", ["", "someone-elses-nonce"])
def test_another_browser_is_refused(keyring: Keyring, nonce: str) -> None:
    binding = new_binding("google_calendar")
    state = open_state(keyring, _state(keyring, binding.digest), provider="google", now=NOW)
    with pytest.raises(InvalidOAuthState) as caught:
        check_binding(state, nonce)
    assert caught.value.reason == MISMATCH


def test_an_unbound_state_is_not_checked(keyring: Keyring) -> None:
    state = open_state(keyring, _state(keyring, None), provider="google", now=NOW)
    check_binding(state, "")


def test_the_cookie_is_http_only_lax_and_secure_on_https() -> None:
    binding = new_binding("google_calendar")
    cookie = binding.set_cookie(secure=True)
    assert cookie.startswith(f"renove_oauth_google_calendar={binding.nonce};")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    assert "Path=/api/v1/conexoes" in cookie and "Max-Age=600" in cookie
    assert "Secure" not in binding.set_cookie(secure=False)
    assert binding.nonce not in binding.digest


def test_the_sidecar_forwards_only_its_callbacks_cookie() -> None:
    name = binding_cookie("google_calendar")
    binding = new_binding("google_calendar")
    cookies = {name: binding.nonce, "renove_oauth_email_gmail": "other"}
    assert binding_metadata(cookies, name) == (("x-oauth-browser-nonce", binding.nonce),)
    assert nonce_from_metadata(binding_metadata(cookies, name)) == binding.nonce
    assert binding_metadata({}, name) == ()
    assert binding_metadata({name: "bad value;"}, name) == ()
