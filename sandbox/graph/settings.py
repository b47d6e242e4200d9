"""How the Graph fake behaves; defaults follow Meta's documented figures."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

SIXTY_DAYS = 60 * 24 * 3600


@dataclass(frozen=True)
class GraphSettings:
    """Attributes:
    app_id / app_secret: the one Meta App the fake knows (changeable via /_control/app).
    verify_token: what the fake sends in the webhook verification handshake.
    webhook_url: where leadgen webhooks go (empty: none are sent until configured).
    short_token_ttl: lifetime of a token from the code exchange (Meta: about 1-2 h).
    long_token_ttl: lifetime of a long-lived user token (Meta: about 60 days).
    page_limit: default page size of list edges (Graph's default is 25).
    webhook_retry_delays: seconds before each redelivery after a failed POST (Meta retries
        for 36 h with decreasing frequency; tests scale this down).
    webhook_timeout_seconds: per-attempt timeout of a webhook POST.
    subscribed_apps_success_as_string: answer `{"success": "true"}` (the docs' sample) instead
        of a JSON boolean.
    """

    app_id: str = "1234567890123456"
    app_secret: str = "sandbox-meta-app-secret"
    verify_token: str = "sandbox-verify-token"
    webhook_url: str = ""
    short_token_ttl: int = 7200
    long_token_ttl: int = SIXTY_DAYS - 56  # 5183944 s, as in Meta's sample answer
    page_limit: int = 25
    webhook_retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0)
    webhook_timeout_seconds: float = 10.0
    subscribed_apps_success_as_string: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GraphSettings:
        """`SANDBOX_META_*` overrides, falling back to the server's `CONEXOES_META_*`, so one
        `make run` configures both sides with the same app."""
        env = os.environ if environ is None else environ
        d = cls()
        return cls(
            app_id=env.get("SANDBOX_META_APP_ID", env.get("CONEXOES_META_APP_ID", d.app_id)),
            app_secret=env.get(
                "SANDBOX_META_APP_SECRET", env.get("CONEXOES_META_APP_SECRET", d.app_secret)
            ),
            verify_token=env.get(
                "SANDBOX_META_VERIFY_TOKEN", env.get("CONEXOES_META_VERIFY_TOKEN", d.verify_token)
            ),
            webhook_url=env.get("SANDBOX_META_WEBHOOK_URL", d.webhook_url),
        )
