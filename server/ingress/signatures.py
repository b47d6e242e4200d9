"""Provider webhook authentication as pure functions over (headers, raw body, secret).

Every check hashes the exact bytes received (docs/providers.md, rules: re-serialised JSON
never matches)
and compares in constant time. Each returns a `Check`: OK, MISSING (no signature at all, 401)
or INVALID (a signature that does not match, or no secret configured to check it, 403).

`headers` is a mapping with lower-case names (see `header_map`).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable, Mapping


class Check(enum.Enum):
    OK = "ok"
    MISSING = "missing_signature"
    INVALID = "invalid_signature"


def header_map(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased header names -> first value (a repeated signature header is not merged)."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        headers.setdefault(name.lower(), value)
    return headers


def _equal(expected: str, received: str) -> bool:
    # compare_digest needs ASCII str or bytes; a non-ASCII header is simply wrong.
    return hmac.compare_digest(expected.encode(), received.strip().lower().encode("utf-8"))


def verify_waha(headers: Mapping[str, str], body: bytes, key: str | None) -> Check:
    """WAHA (docs/providers.md, WAHA): X-Webhook-Hmac = hex HMAC-SHA512(key, raw body)."""
    received = headers.get("x-webhook-hmac", "")
    if not received:
        return Check.MISSING
    algorithm = headers.get("x-webhook-hmac-algorithm", "sha512").strip().lower()
    if not key or algorithm != "sha512":
        return Check.INVALID
    expected = hmac.new(key.encode(), body, hashlib.sha512).hexdigest()
    return Check.OK if _equal(expected, received) else Check.INVALID


def verify_hub_signature(headers: Mapping[str, str], body: bytes, app_secret: str | None) -> Check:
    """Meta and Instagram (docs/providers.md, Meta Graph): X-Hub-Signature-256 = "sha256=" +
    hex HMAC.

    The legacy SHA-1 `X-Hub-Signature` is deliberately ignored.
    """
    received = headers.get("x-hub-signature-256", "")
    if not received:
        return Check.MISSING
    if not app_secret:
        return Check.INVALID
    expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return Check.OK if _equal(expected, received) else Check.INVALID


def verify_channel_token(headers: Mapping[str, str], stored_token: str | None) -> Check:
    """Google Calendar push (docs/providers.md, Google Calendar): no signature, the channel
    token must match."""
    received = headers.get("x-goog-channel-token", "")
    if not received:
        return Check.MISSING
    if not stored_token:
        return Check.INVALID
    ok = hmac.compare_digest(stored_token.encode(), received.encode("utf-8"))
    return Check.OK if ok else Check.INVALID


def subscription_challenge(
    query: Iterable[tuple[str, str]], verify_token: str | None
) -> str | None:
    """Meta's subscription handshake (docs/providers.md, Meta Graph): the challenge to echo,
    or None (403).

    A repeated parameter is ambiguous; the first value is the one judged.
    """
    params: dict[str, str] = {}
    for name, value in query:
        params.setdefault(name, value)
    mode = params.get("hub.mode", "")
    token = params.get("hub.verify_token", "")
    challenge = params.get("hub.challenge")
    if mode != "subscribe" or not verify_token or challenge is None:
        return None
    if not hmac.compare_digest(verify_token.encode(), token.encode("utf-8")):
        return None
    return challenge
