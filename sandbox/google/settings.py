"""How the Google fake behaves; defaults follow Google's documented figures."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GoogleSettings:
    """Attributes:
    client_id / client_secret: the one Google App the fake knows.
    access_token_ttl: lifetime of an access token (Google: 3599 s).
    testing_mode: the app is in "Testing" publishing status: refresh tokens carry
        `refresh_token_expires_in` (7 days) and die then.
    conference_pending_reads: how many `events.get` still see a new conference `pending`.
    push_rewrite: `public=internal` URL prefix pairs applied to a channel's address before
        delivering (the TLS-terminating proxy in front of the sidecar).
    require_https: refuse watch addresses that are not HTTPS, as Google does.
    """

    client_id: str = "sandbox-google-client.apps.googleusercontent.com"
    client_secret: str = "sandbox-google-client-secret"
    access_token_ttl: int = 3599
    testing_mode: bool = False
    conference_pending_reads: int = 1
    push_rewrite: tuple[tuple[str, str], ...] = ()
    require_https: bool = True
    channel_ttl_seconds: int = 7 * 24 * 3600

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GoogleSettings:
        """`SANDBOX_GOOGLE_*` overrides, falling back to the server's `CONEXOES_GOOGLE_*`."""
        env = os.environ if environ is None else environ
        d = cls()
        rewrite = tuple(
            tuple(pair.split("=", 1))
            for pair in env.get("SANDBOX_GOOGLE_PUSH_REWRITE", "").split(",")
            if "=" in pair
        )
        return cls(
            client_id=env.get(
                "SANDBOX_GOOGLE_CLIENT_ID", env.get("CONEXOES_GOOGLE_CLIENT_ID", d.client_id)
            ),
            client_secret=env.get(
                "SANDBOX_GOOGLE_CLIENT_SECRET",
                env.get("CONEXOES_GOOGLE_CLIENT_SECRET", d.client_secret),
            ),
            testing_mode=env.get("SANDBOX_GOOGLE_TESTING_MODE", "") == "1",
            push_rewrite=rewrite,  # type: ignore[arg-type]
            require_https=env.get("SANDBOX_GOOGLE_REQUIRE_HTTPS", "1") != "0",
        )
