"""The ingress's pure parts: signature checks (providers.md vectors), event extraction, the
rate limiter, client addresses behind proxies, the sidecar's token refresh.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from server.auth.tokens import TokenVerifier
from server.errors import Unauthenticated
from server.ingress.routes import (
    Malformed,
    google_calendar_events,
    instagram_events,
    meta_leadgen_events,
    waha_events,
)
from server.ingress.signatures import (
    Check,
    header_map,
    subscription_challenge,
    verify_channel_token,
    verify_hub_signature,
    verify_waha,
)
from webhooks_http.ratelimit import TokenBucketLimiter, client_address
from webhooks_http.service_identity import ServiceIdentity

# docs/providers.md (WAHA): the test vector WAHA publishes.
WAHA_BODY = b'{"event":"message","session":"default","engine":"WEBJS"}'
WAHA_DIGEST = (
    "208f8a55dde9e05519e898b10b89bf0d0b3b0fdf11fdbf09b6b90476301b98d8"
    "097c462b2b17a6ce93b6b47a136cf2e78a33a63f6752c2c1631777076153fa89"
)


def test_waha_vector() -> None:
    headers = header_map([("X-Webhook-Hmac", WAHA_DIGEST), ("X-Webhook-Hmac-Algorithm", "sha512")])
    assert verify_waha(headers, WAHA_BODY, "my-secret-key") is Check.OK
    assert verify_waha(headers, WAHA_BODY + b" ", "my-secret-key") is Check.INVALID
    assert verify_waha(headers, WAHA_BODY, "other-key") is Check.INVALID
    assert verify_waha(headers, WAHA_BODY, None) is Check.INVALID
    assert verify_waha({}, WAHA_BODY, "my-secret-key") is Check.MISSING
    sha256 = {**headers, "x-webhook-hmac-algorithm": "sha256"}
    assert verify_waha(sha256, WAHA_BODY, "my-secret-key") is Check.INVALID


def test_hub_signature_is_over_the_bytes_as_sent() -> None:
    body = b'{"text":"S\\u00e3o Paulo"}'  # Meta sends escaped unicode
    digest = hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()
    headers = {"x-hub-signature-256": f"sha256={digest}"}
    assert verify_hub_signature(headers, body, "app-secret") is Check.OK
    reencoded = '{"text":"São Paulo"}'.encode()
    assert verify_hub_signature(headers, reencoded, "app-secret") is Check.INVALID
    assert verify_hub_signature({"x-hub-signature-256": "sha256=é"}, body, "s") is Check.INVALID
    assert verify_hub_signature({"x-hub-signature": "sha1=00"}, body, "s") is Check.MISSING


def test_channel_token_and_handshake() -> None:
    assert verify_channel_token({"x-goog-channel-token": "t"}, "t") is Check.OK
    assert verify_channel_token({"x-goog-channel-token": "u"}, "t") is Check.INVALID
    assert verify_channel_token({}, "t") is Check.MISSING
    query = [("hub.mode", "subscribe"), ("hub.challenge", "99"), ("hub.verify_token", "v")]
    assert subscription_challenge(query, "v") == "99"
    assert subscription_challenge(query, "w") is None
    assert subscription_challenge(query, None) is None
    assert subscription_challenge([("hub.mode", "unsubscribe"), *query[1:]], "v") is None


def test_waha_event_ids() -> None:
    (event,) = waha_events({"id": "evt_1", "session": "s", "event": "message"}, b"")
    assert (event.event_id, event.lookup) == ("evt_1", "s")
    old = {"session": "s", "event": "message.ack", "payload": {"id": "m1", "ack": 3}}
    assert waha_events(old, b"")[0].event_id == "s:message.ack:m1:3"
    bare = {"session": "s", "event": "session.status", "payload": {"status": "WORKING"}}
    assert waha_events(bare, b"x")[0].event_id.startswith("sha256:")
    with pytest.raises(Malformed):
        waha_events({"event": "message"}, b"")
    with pytest.raises(Malformed):
        waha_events([1, 2], b"")


def test_leadgen_ids_stay_exact_and_other_fields_are_skipped() -> None:
    import json

    body = json.loads(
        '{"object":"page","entry":[{"id":153125381133,"changes":['
        '{"field":"feed","value":{}},'
        '{"field":"leadgen","value":{"leadgen_id":123456789012345678,"page_id":153125381133,'
        '"form_id":12312312312}}]}]}'
    )
    (event,) = meta_leadgen_events(body, b"")
    assert event.event_id == "123456789012345678" and event.lookup == "153125381133"
    assert event.facts["form_id"] == "12312312312"
    with pytest.raises(Malformed):
        meta_leadgen_events({"entry": {"not": "a list"}}, b"")


def test_instagram_and_google_events() -> None:
    body = {"entry": [{"id": "IG1", "messaging": [
        {"sender": {"id": "U"}, "recipient": {"id": "IG1"}, "timestamp": 5,
         "message": {"mid": "M1", "is_echo": True}},
        {"sender": {"id": "U"}, "recipient": {"id": "IG1"}, "timestamp": 6,
         "read": {"mid": "M1"}}]}]}  # fmt: skip
    echo, read = instagram_events(body, b"")
    assert (echo.event_id, echo.lookup, echo.facts["is_echo"]) == ("M1", "IG1", "true")
    assert read.event_id == "read:M1:U:IG1:6"
    (push,) = google_calendar_events({"x-goog-channel-id": "C", "x-goog-message-number": "2"})
    assert (push.event_id, push.lookup) == ("C:2", "C")
    with pytest.raises(Malformed):
        google_calendar_events({"x-goog-channel-id": "C"})


def test_token_bucket() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(2.0, 3, clock=lambda: now[0], max_keys=2)
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    wait = limiter.acquire("a")
    assert wait == pytest.approx(0.5)
    assert limiter.acquire("b") is None  # another key, another bucket
    now[0] += 0.5
    assert limiter.acquire("a") is None


def test_client_address_trusts_only_named_proxies() -> None:
    scope = {
        "client": ("10.0.0.5", 1234),
        "headers": [(b"x-forwarded-for", b"198.51.100.9, 203.0.113.1")],
    }
    assert client_address(scope) == ("10.0.0.5", 1234)
    proxy = (ipaddress.ip_network("10.0.0.0/8"),)
    assert client_address(scope, proxy) == ("203.0.113.1", 0)
    both = (*proxy, ipaddress.ip_network("203.0.113.0/24"))
    assert client_address(scope, both) == ("198.51.100.9", 0)


def test_service_token_is_refreshed_before_expiry() -> None:
    clock = [datetime.now(UTC) - timedelta(minutes=56)]
    identity = ServiceIdentity(
        "s" * 32, ttl=timedelta(hours=1), refresh_margin=timedelta(minutes=5),
        now=lambda: clock[0],
    )  # fmt: skip
    first = identity.metadata()
    clock[0] += timedelta(minutes=50)
    assert identity.metadata() == first
    clock[0] += timedelta(minutes=6)
    second = identity.metadata()
    assert second != first
    token = second[0][1].removeprefix("Bearer ")
    verifier = TokenVerifier(hs256_secret="u" * 32, rs256_public_key=None, service_secret="s" * 32)
    assert verifier.verify(token).role.value == "service"
    # The user-token key alone does not accept it (nor could it have minted it).
    with pytest.raises(Unauthenticated):
        TokenVerifier(hs256_secret="s" * 32, rs256_public_key=None).verify(token)
