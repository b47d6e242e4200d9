"""The sidecar's configuration: one frozen dataclass read from the environment, in one place.

The sidecar shares variable names with the server (README, "Configuration") but imports none
of the server's code: `build_sidecar_app` takes any object with the `SidecarConfig` fields, so
tests may hand it the server's settings, and `python -m webhooks_http` reads its own.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from webhooks_http.slow_clients import SlowClientLimits

# The server's development secret (server/settings.py holds the same value): used only when
# no key of any kind is configured, so `make run` works without configuration.
DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me"
# Likewise the service identity's development key (server/settings.py).
DEV_SERVICE_TOKEN_SECRET = "dev-only-insecure-service-token-secret-change-me"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SidecarConfig(Protocol):
    """What the sidecar reads from its configuration."""

    @property
    def frontend_url(self) -> str: ...
    @property
    def cors_origins(self) -> tuple[str, ...]: ...
    @property
    def max_webhook_bytes(self) -> int: ...
    @property
    def effective_service_secret(self) -> str | None: ...


@dataclass(frozen=True)
class RateLimitOptions:
    rate_per_second: float = 100.0
    burst: int = 1000
    trusted_proxies: tuple[Network, ...] = ()


@dataclass(frozen=True)
class SidecarOptions:
    """Sidecar-only settings (README, "Configuration")."""

    rate_limit: RateLimitOptions = field(default_factory=RateLimitOptions)
    webhook_deadline_s: float = 10.0
    mount_gateway: bool = True
    # Bounded time for request headers and bodies on the public port (slow_clients.py).
    slow_clients: SlowClientLimits = field(default_factory=SlowClientLimits)
    # Open SSE/NDJSON streams one client address may hold at once (429 beyond).
    max_streams_per_address: int = 32
    # False (CONEXOES_OBSERVABILITY=off): no request ids, HTTP metrics, access lines or
    # /metrics; it exists to measure what they cost (bench row 11).
    observability: bool = True


@dataclass(frozen=True)
class SidecarSettings:
    grpc_addr: str = "127.0.0.1:50051"
    http_addr: str = "127.0.0.1:8080"
    frontend_url: str = "http://127.0.0.1:3000"
    cors_origins: tuple[str, ...] = ()
    max_webhook_bytes: int = 1_048_576
    log_level: str = "INFO"
    log_format: str = "json"
    access_log: str = "errors"
    otlp_endpoint: str | None = None
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    service_token_secret: str | None = None
    options: SidecarOptions = field(default_factory=SidecarOptions)

    @property
    def effective_service_secret(self) -> str | None:
        """The key of the sidecar's service token; the development one only when no key of
        any kind is configured (as the server decides)."""
        if self.service_token_secret:
            return self.service_token_secret
        if self.jwt_secret or self.jwt_public_key:
            return None
        return DEV_SERVICE_TOKEN_SECRET

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SidecarSettings:
        env = os.environ if env is None else env
        proxies = tuple(
            ipaddress.ip_network(p.strip(), strict=False)
            for p in env.get("CONEXOES_TRUSTED_PROXIES", "").split(",")
            if p.strip()
        )
        limits = RateLimitOptions(
            rate_per_second=float(
                env.get("CONEXOES_WEBHOOK_RATE_PER_SECOND", RateLimitOptions.rate_per_second)
            ),
            burst=int(env.get("CONEXOES_WEBHOOK_RATE_BURST", RateLimitOptions.burst)),
            trusted_proxies=proxies,
        )
        options = SidecarOptions(
            rate_limit=limits,
            webhook_deadline_s=float(
                env.get("CONEXOES_WEBHOOK_DEADLINE_SECONDS", SidecarOptions.webhook_deadline_s)
            ),
            max_streams_per_address=int(env.get("CONEXOES_MAX_STREAMS_PER_ADDRESS", 32)),
            observability=env.get("CONEXOES_OBSERVABILITY", "on").lower() != "off",
            slow_clients=SlowClientLimits(
                header_timeout_s=float(env.get("CONEXOES_HTTP_HEADER_TIMEOUT_SECONDS", 10)),
                body_idle_timeout_s=float(env.get("CONEXOES_HTTP_BODY_IDLE_TIMEOUT_SECONDS", 10)),
                body_total_timeout_s=float(env.get("CONEXOES_HTTP_BODY_TIMEOUT_SECONDS", 30)),
            ),
        )
        origins = tuple(
            o.strip() for o in env.get("CONEXOES_CORS_ORIGINS", "").split(",") if o.strip()
        )
        return cls(
            grpc_addr=env.get("CONEXOES_GRPC_ADDR", cls.grpc_addr),
            http_addr=env.get("CONEXOES_HTTP_ADDR", cls.http_addr),
            frontend_url=env.get("CONEXOES_FRONTEND_URL", cls.frontend_url).rstrip("/"),
            cors_origins=origins,
            max_webhook_bytes=int(env.get("CONEXOES_MAX_BODY_BYTES", cls.max_webhook_bytes)),
            log_level=env.get("CONEXOES_LOG_LEVEL", cls.log_level),
            log_format="text" if env.get("CONEXOES_LOG_FORMAT", "").lower() == "text" else "json",
            access_log="all" if env.get("CONEXOES_ACCESS_LOG", "").lower() == "all" else "errors",
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            jwt_secret=env.get("CONEXOES_JWT_SECRET") or None,
            jwt_public_key=env.get("CONEXOES_JWT_PUBLIC_KEY") or None,
            service_token_secret=env.get("CONEXOES_SERVICE_TOKEN_SECRET") or None,
            options=options,
        )
