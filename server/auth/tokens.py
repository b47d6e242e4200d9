"""Verifies caller JWTs (HS256 secret or RS256 public key) and mints development tokens."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import jwt

from server.auth.caller import Caller, Role
from server.errors import Unauthenticated

_REQUIRED = ["exp", "role"]


class TokenVerifier:
    """Verifies bearer tokens, remembering each verified token until its `exp`.

    User tokens verify with the user-token key (HS256 secret or RS256 public key); service
    tokens (`role=service`) only with the service key, which nobody else holds.

    A JWT is immutable and its verdict depends only on its bytes and the keys, so a token seen
    again before its expiry is answered from memory; from `exp` on it is decoded afresh (which
    applies the leeway and refuses it once that has passed). Grants are not part of the token
    and are still read on every check. Refused tokens are never remembered.
    """

    def __init__(
        self,
        *,
        hs256_secret: str | None,
        rs256_public_key: str | None,
        service_secret: str | None = None,
        cache_size: int = 10_000,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        self._cache_size = cache_size
        self._now = wall_clock
        if not hs256_secret and not rs256_public_key:
            raise ValueError("configure CONEXOES_JWT_SECRET or CONEXOES_JWT_PUBLIC_KEY")
        self._keys: list[tuple[str, str]] = []
        if rs256_public_key:
            self._keys.append(("RS256", rs256_public_key))
        if hs256_secret:
            self._keys.append(("HS256", hs256_secret))
        self._service_keys = [("HS256", service_secret)] if service_secret else []

    def verify(self, token: str) -> Caller:
        remembered = self._verified.get(token)
        if remembered is not None:
            caller, expires_at = remembered
            if self._now() < expires_at:
                return caller
            del self._verified[token]
        caller, expires_at = self._verify(token)
        if self._cache_size > 0 and self._now() < expires_at:
            if len(self._verified) >= self._cache_size:
                self._verified.popitem(last=False)
            self._verified[token] = (caller, expires_at)
        return caller

    def _verify(self, token: str) -> tuple[Caller, float]:
        claims = self._decode(token, self._keys_for(token))
        try:
            role = Role(str(claims["role"]))
        except ValueError as exc:
            raise Unauthenticated(f"unknown role {claims['role']!r}") from exc
        tenant = _optional_uuid(claims, "org")
        user = _optional_uuid(claims, "sub")
        if role in (Role.ADMIN, Role.MEMBER) and (tenant is None or user is None):
            raise Unauthenticated("admin and member tokens must name 'org' and 'sub'")
        expires_at = claims["exp"]
        return Caller(role=role, tenant_id=tenant, user_id=user), (
            float(expires_at) if isinstance(expires_at, int | float) else 0.0
        )

    def _keys_for(self, token: str) -> list[tuple[str, str]]:
        # The claim picks the key; the signature then proves it. A service claim signed with
        # the user-token key fails here, whoever holds that key.
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise Unauthenticated("malformed token") from exc
        if unverified.get("role") != Role.SERVICE.value:
            return self._keys
        if not self._service_keys:
            raise Unauthenticated("service tokens are not accepted: no service key configured")
        return self._service_keys

    def _decode(self, token: str, keys: list[tuple[str, str]]) -> dict[str, object]:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError as exc:
            raise Unauthenticated("malformed token") from exc
        for alg, key in keys:
            if alg == algorithm:
                try:
                    claims: dict[str, object] = jwt.decode(
                        token, key, algorithms=[alg], options={"require": _REQUIRED}, leeway=30
                    )
                except jwt.ExpiredSignatureError as exc:
                    raise Unauthenticated("token expired") from exc
                except jwt.PyJWTError as exc:
                    raise Unauthenticated(f"invalid token: {exc}") from exc
                _check_numeric_dates(claims)
                return claims
        raise Unauthenticated(f"tokens signed with {algorithm!r} are not accepted")


def _check_numeric_dates(claims: dict[str, object]) -> None:
    """exp, iat and nbf are NumericDates (RFC 7519 section 2): JSON numbers. PyJWT also takes a
    numeric string, which no issuer of ours writes; such a token is refused."""
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise Unauthenticated(f"claim {name!r} is not a number")


def _optional_uuid(claims: dict[str, object], name: str) -> uuid.UUID | None:
    value = claims.get(name)
    if value in (None, ""):
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise Unauthenticated(f"claim {name!r} is not a UUID") from exc


def mint_token(
    secret: str,
    *,
    role: Role,
    tenant_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    ttl: timedelta = timedelta(hours=12),
    now: datetime | None = None,
) -> str:
    """An HS256 token for development and tests. Service tokens are signed with the service
    key (CONEXOES_SERVICE_TOKEN_SECRET), every other role with the user-token secret."""
    issued = now or datetime.now(UTC)
    claims: dict[str, object] = {"role": role.value, "iat": issued, "exp": issued + ttl}
    if tenant_id is not None:
        claims["org"] = str(tenant_id)
    if user_id is not None:
        claims["sub"] = str(user_id)
    return jwt.encode(claims, secret, algorithm="HS256")
