"""Verified tokens are remembered until their expiry, bounded, and refused ones never are."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from server.auth.caller import Role
from server.auth.tokens import TokenVerifier, mint_token
from server.errors import Unauthenticated

SECRET = "cache-cache-cache-cache-cache-32b"
TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000c1")


class WallClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _token(ttl: timedelta, user: uuid.UUID | None = None) -> str:
    return mint_token(
        SECRET, role=Role.MEMBER, tenant_id=TENANT, user_id=user or uuid.uuid4(), ttl=ttl
    )


def test_a_token_is_remembered_until_its_expiry_and_decoded_again_from_then() -> None:
    clock = WallClock()
    verifier = TokenVerifier(hs256_secret=SECRET, rs256_public_key=None, wall_clock=clock)
    user = uuid.uuid4()
    token = _token(timedelta(minutes=5), user)
    assert verifier.verify(token).user_id == user
    # Rotating the key shows which answers come from memory: before exp, the remembered one.
    verifier._keys = [("HS256", "another-secret-another-secret-32b")]
    clock.now += 290
    assert verifier.verify(token).user_id == user
    # From exp on the token is decoded afresh, and the rotated key refuses it.
    clock.now += 15
    with pytest.raises(Unauthenticated):
        verifier.verify(token)
    assert token not in verifier._verified


def test_an_expired_token_is_refused_as_before() -> None:
    verifier = TokenVerifier(hs256_secret=SECRET, rs256_public_key=None)
    expired = mint_token(
        SECRET,
        role=Role.MEMBER,
        tenant_id=TENANT,
        user_id=uuid.uuid4(),
        ttl=timedelta(seconds=1),
        now=datetime.now(UTC) - timedelta(minutes=5),
    )
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            verifier.verify(expired)
    assert not verifier._verified


def test_refused_tokens_are_not_remembered_and_the_memory_is_bounded() -> None:
    verifier = TokenVerifier(hs256_secret=SECRET, rs256_public_key=None, cache_size=2)
    forged = mint_token("forged-forged-forged-forged-forg32", role=Role.ADMIN, tenant_id=TENANT)
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            verifier.verify(forged)
    tokens = [_token(timedelta(minutes=5)) for _ in range(3)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._verified) == 2
    assert tokens[0] not in verifier._verified
