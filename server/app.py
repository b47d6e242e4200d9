"""Builds the grpc.aio server: servicers, interceptors, health and reflection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.auth.permissions import PERMISSIONS
from server.bootstrap import Deps
from server.interceptors.guard import CallGuard
from server.interceptors.stream_caps import StreamCaps
from server.observability.interceptor import ObservabilityInterceptor
from server.observability.process import ProcessObservability
from server.services import register_jobs, register_services

_log = logging.getLogger(__name__)

# Many long-lived status streams per replica: raise grpc's defaults (1,000 pending requests,
# 100 concurrent streams per connection) and keep idle streams alive through proxies.
SERVER_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.max_concurrent_streams", 20_000),
    ("grpc.server_max_pending_requests", 20_000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    # An e-mail with its attachments may reach 20 MB (SendEmail); gRPC's default cap is 4 MB.
    ("grpc.max_receive_message_length", 24 * 1024 * 1024),
)


class GrpcApp:
    """The running server and its shutdown sequence."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.health = health.aio.HealthServicer()
        self.stream_caps = StreamCaps(deps.settings.max_streams_per_caller)
        # Observability off (CONEXOES_OBSERVABILITY=off) only to measure what it costs.
        observed = [ObservabilityInterceptor()] if deps.settings.observability else []
        self.server = grpc.aio.server(
            interceptors=[
                *observed,
                CallGuard(
                    deps.verifier,
                    PERMISSIONS,
                    deps.identities.grants,
                    on_identity=deps.identities.ensure,
                    stream_caps=self.stream_caps,
                ),
            ],
            options=list(SERVER_OPTIONS),
        )
        names = register_services(self.server, deps)
        register_jobs(deps)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.service_names = names
        self.port = 0
        self.observability = ProcessObservability(deps.settings, deps.db)

    async def start(self, address: str) -> int:
        self.port = self.server.add_insecure_port(address)
        await self.server.start()
        self.observability.start()
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        # CONEXOES_WORKER_CONCURRENCY=0 leaves jobs and periodic tasks to `server worker`.
        if self.deps.settings.worker_concurrency > 0:
            await self.deps.worker.start()
            await self.deps.scheduler.start()
        _log.info("gRPC server listening on %s", address.rsplit(":", 1)[0] + f":{self.port}")
        return self.port

    async def stop(self, grace: float = 10.0) -> None:
        """Drain: stop claiming jobs and let running ones finish (their leases are released
        after `grace`), report NOT_SERVING, end streams, let in-flight unary calls finish."""
        await self.deps.worker.stop(grace)
        await self.deps.scheduler.stop(grace)
        await self.health.enter_graceful_shutdown()
        await self.deps.bus.stop()
        await self.server.stop(grace)
        await self.observability.stop()
        await self.deps.close()

    async def wait(self) -> None:
        await self.server.wait_for_termination()


async def serve_until_signal(app: GrpcApp, address: str) -> None:
    import signal

    await app.start(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    _log.info("shutting down: draining calls and closing streams")
    await app.stop()
