"""Secrets at rest, OAuth state, log redaction and caller tokens."""

from __future__ import annotations

import io
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server.auth.caller import Role
from server.auth.tokens import TokenVerifier, mint_token
from server.errors import Unauthenticated
from server.security import (
    DecryptionError,
    InvalidOAuthState,
    Keyring,
    RedactingFilter,
    SecretContext,
    issue_state,
    open_state,
    redact,
)

TENANT_A, TENANT_B = uuid.uuid4(), uuid.uuid4()
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _ctx(tenant: uuid.UUID = TENANT_A, column: str = "access_token_encrypted") -> SecretContext:
    return SecretContext("conexoes_meta", column, tenant)


def test_round_trip_and_nonce_uniqueness() -> None:
    ring = Keyring.parse(Keyring.generate_key_spec("k1"))
    first, second = ring.encrypt("EAAB-token", _ctx()), ring.encrypt("EAAB-token", _ctx())
    assert first != second
    assert ring.decrypt(first, _ctx()) == "EAAB-token"
    assert "EAAB" not in first


def test_ciphertext_moved_to_another_tenant_or_column_does_not_decrypt() -> None:
    ring = Keyring.parse(Keyring.generate_key_spec("k1"))
    stored = ring.encrypt("secret", _ctx(TENANT_A))
    with pytest.raises(DecryptionError):
        ring.decrypt(stored, _ctx(TENANT_B))
    with pytest.raises(DecryptionError):
        ring.decrypt(stored, _ctx(TENANT_A, column="refresh_token_encrypted"))


def test_rotation_old_keys_decrypt_new_key_encrypts() -> None:
    old_spec = Keyring.generate_key_spec("old")
    old_value = Keyring.parse(old_spec).encrypt("legacy", _ctx())
    rotated = Keyring.parse(f"{Keyring.generate_key_spec('new')},{old_spec}")
    assert rotated.decrypt(old_value, _ctx()) == "legacy"
    assert rotated.needs_rotation(old_value)
    fresh = rotated.encrypt("fresh", _ctx())
    assert fresh.split(":")[1] == "new" and not rotated.needs_rotation(fresh)
    with pytest.raises(DecryptionError):
        Keyring.parse(Keyring.generate_key_spec("other")).decrypt(old_value, _ctx())


def test_tampered_value_fails() -> None:
    ring = Keyring.parse(Keyring.generate_key_spec("k1"))
    stored = ring.encrypt("secret", _ctx())
    tampered = stored[:-2] + ("A" if stored[-2] != "A" else "B") + stored[-1]
    with pytest.raises(DecryptionError):
        ring.decrypt(tampered, _ctx())


def test_development_key_is_created_once_with_private_mode(tmp_path: Path) -> None:
    first = Keyring.from_config(None, tmp_path)
    value = first.encrypt("x", _ctx())
    assert Keyring.from_config(None, tmp_path).decrypt(value, _ctx()) == "x"
    assert (tmp_path / "dev-encryption-key").stat().st_mode & 0o777 == 0o600


def test_bad_key_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        Keyring.parse("k1:c2hvcnQ")


def test_oauth_state_binds_provider_and_expires() -> None:
    ring = Keyring.parse(Keyring.generate_key_spec("k1"))
    user = uuid.uuid4()
    token, issued = issue_state(
        ring,
        provider="google",
        tenant_id=TENANT_A,
        user_id=user,
        redirect_uri="https://app/cb",
        now=NOW,
        code_verifier="verifier-123",
    )
    assert "verifier-123" not in token
    opened = open_state(ring, token, provider="google", now=NOW + timedelta(minutes=9))
    assert opened == issued
    with pytest.raises(InvalidOAuthState) as expired:
        open_state(ring, token, provider="google", now=NOW + timedelta(minutes=10))
    assert expired.value.reason == "STATE_EXPIRED"
    with pytest.raises(InvalidOAuthState):
        open_state(ring, token, provider="meta", now=NOW)
    with pytest.raises(InvalidOAuthState):
        open_state(ring, token[:-3] + "abc", provider="google", now=NOW)
    with pytest.raises(InvalidOAuthState):
        open_state(Keyring.parse(Keyring.generate_key_spec("x")), token, provider="google", now=NOW)


@pytest.mark.parametrize(
    "line",
    [
        "page_token: not a token this API issued",
        "invalid token: Signature verification failed",
        "the token: expired yesterday",
    ],
)
def test_redaction_keeps_the_words_of_error_messages(line: str) -> None:
    assert redact(line) == line


def test_redaction_masks_oauth_codes_in_urls() -> None:
    line = "GET https://graph.example/oauth/access_token?client_id=1&code=AQBx9-secret&x=1"
    out = redact(line)
    assert "AQBx9" not in out and "client_id=1" in out and "x=1" in out


@pytest.mark.parametrize(
    "line",
    [
        "access_token=EAABsbCS1iHgBAKZBZC0",
        '{"password": "hunter2hunter2"}',
        "authorization: Bearer abc.def.ghi",
        "refresh ya29.a0AfH6SMBx1234567890abcdef",
        "client_secret=GOCSPX-abcdef123",
        "X-Api-Key: waha-secret-key",
        "stored v1:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "page_token: EAABsbCS1iHgBAKZBZC0 was refused",
        'the "token": "hunter2hunter2"',
    ],
)
def test_redaction_masks_secrets(line: str) -> None:
    out = redact(line)
    assert "[redacted]" in out
    for secret in (
        "EAABsb",
        "hunter2",
        "abc.def",
        "ya29.a0",
        "GOCSPX",
        "waha-secret",
        "AAAAAAAAAAAA",
    ):
        assert secret not in out


def test_log_filter_redacts_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    try:
        log.warning("calling graph with access_token=%s", "EAABsbCS1iHgBAKZBZC0abc")
        try:
            raise RuntimeError("token=EAABsbCS1iHgBAKZBZC0xyz rejected")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    assert "EAABsb" not in stream.getvalue()
    assert stream.getvalue().count("[redacted]") >= 2


def test_tokens_verify_and_reject() -> None:
    verifier = TokenVerifier(
        hs256_secret="s3cret-s3cret-s3cret-s3cret-32byte", rs256_public_key=None
    )
    user = uuid.uuid4()
    token = mint_token(
        "s3cret-s3cret-s3cret-s3cret-32byte", role=Role.MEMBER, tenant_id=TENANT_A, user_id=user
    )
    caller = verifier.verify(token)
    assert (caller.role, caller.tenant_id, caller.user_id) == (Role.MEMBER, TENANT_A, user)
    for bad in (
        mint_token(
            "other-other-other-other-other-32b", role=Role.ADMIN, tenant_id=TENANT_A, user_id=user
        ),
        mint_token(
            "s3cret-s3cret-s3cret-s3cret-32byte",
            role=Role.ADMIN,
            tenant_id=TENANT_A,
            user_id=user,
            ttl=timedelta(hours=-1),
        ),
        mint_token("s3cret-s3cret-s3cret-s3cret-32byte", role=Role.MEMBER),
        "not-a-jwt",
    ):
        with pytest.raises(Unauthenticated):
            verifier.verify(bad)
