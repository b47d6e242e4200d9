"""Configuration: one frozen dataclass read from the environment, in one place.

Every variable name here is part of the deployment contract (README, "Configuration").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

REAL_PROVIDER_URLS: dict[str, str] = {
    "waha_url": "http://localhost:3000",
    "meta_graph_url": "https://graph.facebook.com",
    "meta_oauth_url": "https://www.facebook.com",
    "instagram_graph_url": "https://graph.instagram.com",
    "instagram_api_url": "https://api.instagram.com",
    "instagram_oauth_url": "https://www.instagram.com",
    "google_oauth_url": "https://accounts.google.com",
    "google_token_url": "https://oauth2.googleapis.com",
    "google_api_url": "https://www.googleapis.com",
}

# Environment variable -> Settings attribute, for the provider base URLs.
PROVIDER_URL_ENV: dict[str, str] = {
    "CONEXOES_WAHA_URL": "waha_url",
    "CONEXOES_META_GRAPH_URL": "meta_graph_url",
    "CONEXOES_META_OAUTH_URL": "meta_oauth_url",
    "CONEXOES_INSTAGRAM_GRAPH_URL": "instagram_graph_url",
    "CONEXOES_INSTAGRAM_API_URL": "instagram_api_url",
    "CONEXOES_INSTAGRAM_OAUTH_URL": "instagram_oauth_url",
    "CONEXOES_GOOGLE_OAUTH_URL": "google_oauth_url",
    "CONEXOES_GOOGLE_TOKEN_URL": "google_token_url",
    "CONEXOES_GOOGLE_API_URL": "google_api_url",
}

# Environment variable -> platform credential key, used when no super-admin value is stored.
PLATFORM_CREDENTIAL_ENV: dict[str, str] = {
    "CONEXOES_WAHA_API_KEY": "waha.api_key",
    "CONEXOES_WAHA_WEBHOOK_HMAC_KEY": "waha.webhook_hmac_key",
    "CONEXOES_META_APP_ID": "meta.app_id",
    "CONEXOES_META_APP_SECRET": "meta.app_secret",
    "CONEXOES_META_VERIFY_TOKEN": "meta.verify_token",
    "CONEXOES_GOOGLE_CLIENT_ID": "google.client_id",
    "CONEXOES_GOOGLE_CLIENT_SECRET": "google.client_secret",
    "CONEXOES_INSTAGRAM_APP_ID": "instagram.app_id",
    "CONEXOES_INSTAGRAM_APP_SECRET": "instagram.app_secret",
}

DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me"
# The internal service identity (the sidecar, the CRM core) has a key of its own, so nobody
# holding the user-token key can mint `role=service` tokens.
DEV_SERVICE_TOKEN_SECRET = "dev-only-insecure-service-token-secret-change-me"


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    database_url: str | None = None
    data_dir: Path = Path(".data")
    grpc_addr: str = "127.0.0.1:50051"
    http_addr: str = "127.0.0.1:8080"
    public_url: str = "http://127.0.0.1:8080"
    frontend_url: str = "http://127.0.0.1:3000"
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    encryption_keys: str | None = None
    service_token_secret: str | None = None
    waha_url: str = REAL_PROVIDER_URLS["waha_url"]
    meta_graph_url: str = REAL_PROVIDER_URLS["meta_graph_url"]
    meta_oauth_url: str = REAL_PROVIDER_URLS["meta_oauth_url"]
    meta_graph_version: str = "v21.0"
    instagram_graph_url: str = REAL_PROVIDER_URLS["instagram_graph_url"]
    instagram_api_url: str = REAL_PROVIDER_URLS["instagram_api_url"]
    instagram_oauth_url: str = REAL_PROVIDER_URLS["instagram_oauth_url"]
    google_oauth_url: str = REAL_PROVIDER_URLS["google_oauth_url"]
    google_token_url: str = REAL_PROVIDER_URLS["google_token_url"]
    google_api_url: str = REAL_PROVIDER_URLS["google_api_url"]
    platform_defaults: Mapping[str, str] = field(default_factory=dict)
    worker_concurrency: int = 4
    # Job queue: seconds a claim holds without a heartbeat; seconds between polls for due
    # retries when no NOTIFY arrives.
    job_lease_seconds: int = 60
    worker_poll_seconds: float = 1.0
    cors_origins: tuple[str, ...] = ()
    max_webhook_bytes: int = 1_048_576
    log_level: str = "INFO"
    # Observability: `json` (one object per line) or `text`; the metrics listener's host:port
    # (unset: no listener); seconds between database gauge samples; the OTLP endpoint
    # (OTEL_EXPORTER_OTLP_ENDPOINT, unset: tracing off).
    log_format: str = "json"
    # `all`: a log line for every RPC and job attempt; `errors`: only failed or slow ones.
    access_log: str = "errors"
    metrics_addr: str | None = None
    metrics_sample_seconds: float = 15.0
    otlp_endpoint: str | None = None
    # False (CONEXOES_OBSERVABILITY=off): no per-call metrics, access lines or request ids and
    # no metrics listener; it exists to measure what they cost (bench row 11).
    observability: bool = True
    # WhatsApp (WAHA): QR rotations without a scan before the session is stopped as
    # "qr_expired", the QR lifetime told to clients, health-check period, stream heartbeats.
    whatsapp_max_qr_rotations: int = 6
    whatsapp_qr_ttl_seconds: int = 60
    whatsapp_health_interval_seconds: float = 300.0
    # Meta Lead Ads: how often each connection's token is checked with Graph's debug_token.
    meta_health_interval_seconds: float = 3600.0
    stream_heartbeat_seconds: float = 15.0
    # Server-streaming calls one caller may hold open at once, per server process.
    max_streams_per_caller: int = 16
    # E-mail: SMTP to loopback/private addresses only when allowed (tests, development);
    # nameservers (ip or ip:port) for MX lookups and outbound webhook targets, the system
    # resolver when empty; an extra CA
    # bundle trusted for SMTP TLS (a private CA); the limit on one SMTP conversation step.
    smtp_allow_private_hosts: bool = False
    dns_nameservers: tuple[str, ...] = ()
    smtp_ca_file: str | None = None
    smtp_timeout_seconds: float = 15.0
    # The CRM change feed: how long recorded changes stay replayable (WatchEvents
    # after_sequence), and whether outbound webhooks may target loopback/private addresses
    # (development and tests only).
    outbox_retention_days: float = 7.0
    # How long handled webhook deliveries (the inbox) and finished jobs are kept.
    webhook_inbox_retention_days: float = 30.0
    job_retention_days: float = 30.0
    webhook_allow_private_targets: bool = False
    # Test hook (CONEXOES_TEST_JOB_MODULE): a module whose `register_jobs(deps)` adds handlers
    # to a worker process, so tests can run a real `python -m server worker` with their own.
    extra_job_modules: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        urls = {attr: env[name] for name, attr in PROVIDER_URL_ENV.items() if env.get(name)}
        defaults = {
            key: env[name] for name, key in PLATFORM_CREDENTIAL_ENV.items() if env.get(name)
        }
        origins = tuple(
            o.strip() for o in env.get("CONEXOES_CORS_ORIGINS", "").split(",") if o.strip()
        )
        http_addr = env.get("CONEXOES_HTTP_ADDR", cls.http_addr)
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            data_dir=Path(env.get("CONEXOES_DATA_DIR", ".data")),
            grpc_addr=env.get("CONEXOES_GRPC_ADDR", cls.grpc_addr),
            http_addr=http_addr,
            public_url=env.get("CONEXOES_PUBLIC_URL", f"http://{http_addr}").rstrip("/"),
            frontend_url=env.get("CONEXOES_FRONTEND_URL", cls.frontend_url).rstrip("/"),
            jwt_secret=env.get("CONEXOES_JWT_SECRET") or None,
            jwt_public_key=env.get("CONEXOES_JWT_PUBLIC_KEY") or None,
            encryption_keys=env.get("CONEXOES_ENCRYPTION_KEYS") or None,
            service_token_secret=env.get("CONEXOES_SERVICE_TOKEN_SECRET") or None,
            meta_graph_version=env.get("CONEXOES_META_GRAPH_VERSION", cls.meta_graph_version),
            platform_defaults=defaults,
            worker_concurrency=int(env.get("CONEXOES_WORKER_CONCURRENCY", cls.worker_concurrency)),
            job_lease_seconds=int(env.get("CONEXOES_JOB_LEASE_SECONDS", cls.job_lease_seconds)),
            worker_poll_seconds=float(
                env.get("CONEXOES_WORKER_POLL_SECONDS", cls.worker_poll_seconds)
            ),
            cors_origins=origins,
            max_webhook_bytes=int(env.get("CONEXOES_MAX_BODY_BYTES", cls.max_webhook_bytes)),
            log_level=env.get("CONEXOES_LOG_LEVEL", cls.log_level),
            log_format="text" if env.get("CONEXOES_LOG_FORMAT", "").lower() == "text" else "json",
            access_log="all" if env.get("CONEXOES_ACCESS_LOG", "").lower() == "all" else "errors",
            metrics_addr=env.get("CONEXOES_METRICS_ADDR") or None,
            metrics_sample_seconds=float(
                env.get("CONEXOES_METRICS_SAMPLE_SECONDS", cls.metrics_sample_seconds)
            ),
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            observability=env.get("CONEXOES_OBSERVABILITY", "on").lower() != "off",
            whatsapp_max_qr_rotations=int(
                env.get("CONEXOES_WHATSAPP_MAX_QR_ROTATIONS", cls.whatsapp_max_qr_rotations)
            ),
            whatsapp_qr_ttl_seconds=int(
                env.get("CONEXOES_WHATSAPP_QR_TTL_SECONDS", cls.whatsapp_qr_ttl_seconds)
            ),
            whatsapp_health_interval_seconds=float(
                env.get(
                    "CONEXOES_WHATSAPP_HEALTH_INTERVAL_SECONDS",
                    cls.whatsapp_health_interval_seconds,
                )
            ),
            meta_health_interval_seconds=float(
                env.get("CONEXOES_META_HEALTH_INTERVAL_SECONDS", cls.meta_health_interval_seconds)
            ),
            stream_heartbeat_seconds=float(
                env.get("CONEXOES_STREAM_HEARTBEAT_SECONDS", cls.stream_heartbeat_seconds)
            ),
            max_streams_per_caller=int(
                env.get("CONEXOES_MAX_STREAMS_PER_CALLER", cls.max_streams_per_caller)
            ),
            smtp_allow_private_hosts=env.get("CONEXOES_SMTP_ALLOW_PRIVATE_HOSTS", "") == "1",
            dns_nameservers=tuple(
                n.strip() for n in env.get("CONEXOES_DNS_NAMESERVERS", "").split(",") if n.strip()
            ),
            smtp_ca_file=env.get("CONEXOES_SMTP_CA_FILE") or None,
            smtp_timeout_seconds=float(
                env.get("CONEXOES_SMTP_TIMEOUT_SECONDS", cls.smtp_timeout_seconds)
            ),
            outbox_retention_days=float(
                env.get("CONEXOES_OUTBOX_RETENTION_DAYS", cls.outbox_retention_days)
            ),
            webhook_inbox_retention_days=float(
                env.get("CONEXOES_WEBHOOK_INBOX_RETENTION_DAYS", cls.webhook_inbox_retention_days)
            ),
            job_retention_days=float(
                env.get("CONEXOES_JOB_RETENTION_DAYS", cls.job_retention_days)
            ),
            webhook_allow_private_targets=env.get("CONEXOES_WEBHOOK_ALLOW_PRIVATE_TARGETS") == "1",
            extra_job_modules=tuple(
                m for m in (env.get("CONEXOES_TEST_JOB_MODULE", "").strip(),) if m
            ),
            **urls,
        )

    @property
    def effective_jwt_secret(self) -> str | None:
        """The HS256 secret; the development secret only when no key of any kind is configured."""
        if self.jwt_secret or self.jwt_public_key:
            return self.jwt_secret
        return DEV_JWT_SECRET

    @property
    def effective_service_secret(self) -> str | None:
        """The HS256 key of service tokens; the development one only when no key of any kind
        is configured (the same rule as the user-token key)."""
        if self.service_token_secret:
            return self.service_token_secret
        if self.jwt_secret or self.jwt_public_key:
            return None
        return DEV_SERVICE_TOKEN_SECRET

    def production_problems(self) -> list[str]:
        """What `python -m server serve|worker` refuses to start without (development secrets
        are for `make run` and tests only)."""
        problems = []
        if not (self.jwt_secret or self.jwt_public_key):
            problems.append(
                "CONEXOES_JWT_SECRET (HS256) or CONEXOES_JWT_PUBLIC_KEY (RS256) is not set:"
                " callers' tokens could be minted by anyone knowing the development secret"
            )
        if not self.encryption_keys:
            problems.append(
                "CONEXOES_ENCRYPTION_KEYS is not set: stored tokens and passwords would be"
                " sealed with a development key"
            )
        return problems

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
