"""Composition root: Settings -> Deps. Nothing is built at import time."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

import httpx

from db.bootstrap import prepare_database
from db.embedded import EmbeddedPostgres, start_embedded
from db.uow import Database
from server.auth.tokens import TokenVerifier
from server.connections.platform_credentials import PlatformCredentials
from server.events import EventBus
from server.identity import Identities
from server.observability import tracing
from server.observability.breakers import observing_breakers
from server.outbox import install_outbox_retention
from server.providers.http import quiet_client_logs
from server.resilience.alerts import BreakerAlerts
from server.resilience.breaker import BreakerRegistry
from server.resilience.clock import Clock, SystemClock
from server.resilience.housekeeping import Retention, install_housekeeping
from server.resilience.jobs import JobRegistry
from server.resilience.scheduler import Scheduler
from server.resilience.worker import Worker
from server.security.cipher import Keyring
from server.settings import Settings

_log = logging.getLogger(__name__)


@dataclass
class Deps:
    settings: Settings
    keyring: Keyring
    db: Database
    bus: EventBus
    verifier: TokenVerifier
    identities: Identities
    platform: PlatformCredentials
    clock: Clock
    # One pooled client for every provider call; provider clients set their own base URLs.
    http: httpx.AsyncClient
    breakers: BreakerRegistry
    jobs: JobRegistry
    # Run the queue's jobs and the periodic tasks; started by GrpcApp or `python -m server worker`.
    worker: Worker
    scheduler: Scheduler
    embedded: EmbeddedPostgres | None = None

    async def close(self) -> None:
        # Normally stopped already (GrpcApp.stop, the worker command); stopping twice is harmless.
        await self.worker.stop(grace=0)
        await self.scheduler.stop(grace=0)
        await self.bus.stop()
        await self.http.aclose()
        await self.db.dispose()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


async def database_urls(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The owner URL (DATABASE_URL, or an embedded server under the data folder)."""
    if settings.database_url:
        return settings.database_url, None
    embedded = await asyncio.to_thread(start_embedded, settings.data_dir)
    _log.info("using embedded PostgreSQL under %s", embedded.pgdata)
    return embedded.owner_url, embedded


async def build_deps(settings: Settings, *, clock: Clock | None = None) -> Deps:
    owner_url, embedded = await database_urls(settings)
    app_url = await prepare_database(owner_url, data_dir=settings.data_dir)
    db = Database(app_url)
    tracing.instrument_engine(db.engine.sync_engine)
    if tracing.enabled():
        db.statement_span = lambda verb: tracing.span(
            f"db {verb}", kind="client", attributes={"db.system": "postgresql"}
        )
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    keyring = Keyring.from_config(settings.encryption_keys, settings.data_dir)
    if not (settings.jwt_secret or settings.jwt_public_key):
        _log.warning("no CONEXOES_JWT_SECRET or CONEXOES_JWT_PUBLIC_KEY: using the dev secret")
    verifier = TokenVerifier(
        hs256_secret=settings.effective_jwt_secret,
        rs256_public_key=settings.jwt_public_key,
        service_secret=settings.effective_service_secret,
    )
    if settings.effective_service_secret is None:
        _log.warning(
            "no CONEXOES_SERVICE_TOKEN_SECRET: service tokens (the sidecar, the CRM core) are"
            " refused"
        )
    bus = EventBus(db.raw_connection)
    await bus.start()
    clock = clock or SystemClock()
    # An open circuit is stored, alerted to super admins and published (alerts.BreakerAlerts).
    breakers = BreakerRegistry(clock, on_transition=observing_breakers(BreakerAlerts(db)))
    jobs = JobRegistry()
    scheduler = Scheduler(db, clock)
    quiet_client_logs()
    install_housekeeping(
        scheduler,
        db,
        Retention(
            finished_jobs=dt.timedelta(days=settings.job_retention_days),
            webhook_inbox=dt.timedelta(days=settings.webhook_inbox_retention_days),
        ),
    )
    install_outbox_retention(scheduler, db, settings.outbox_retention_days)
    return Deps(
        settings=settings,
        keyring=keyring,
        db=db,
        bus=bus,
        verifier=verifier,
        identities=Identities(db),
        platform=PlatformCredentials(settings, keyring),
        clock=clock,
        http=httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=limits,
            headers={"user-agent": "renove-conexoes/0.1"},
            transport=tracing.traced_transport(limits),
        ),
        breakers=breakers,
        jobs=jobs,
        worker=Worker(
            db,
            jobs,
            breakers,
            clock,
            concurrency=max(1, settings.worker_concurrency),
            lease_seconds=settings.job_lease_seconds,
            poll_interval=settings.worker_poll_seconds,
        ),
        scheduler=scheduler,
        embedded=embedded,
    )
