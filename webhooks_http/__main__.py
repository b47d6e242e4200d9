"""`python -m webhooks_http`: the sidecar on CONEXOES_HTTP_ADDR, calling CONEXOES_GRPC_ADDR."""

from __future__ import annotations

import logging
import sys

import grpc
import uvicorn
import uvloop

from webhooks_http.app import build_sidecar_app
from webhooks_http.observability import configure_tracing, install_logging
from webhooks_http.runner import split_address, uvicorn_config
from webhooks_http.settings import SidecarSettings

_log = logging.getLogger("webhooks_http")

# Keep the channel to the server warm and notice a dead server within seconds.
CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)


async def serve(settings: SidecarSettings) -> None:
    # The channel is created on the loop that serves requests (grpc.aio binds to it).
    channel = grpc.aio.insecure_channel(settings.grpc_addr, options=list(CHANNEL_OPTIONS))
    try:
        app = build_sidecar_app(settings, channel, options=settings.options)
        host, port = split_address(settings.http_addr)
        _log.info("sidecar on %s -> gRPC %s", settings.http_addr, settings.grpc_addr)
        config = uvicorn_config(
            app, host, port, slow_clients=settings.options.slow_clients, log_level="info"
        )
        await uvicorn.Server(config).serve()
    finally:
        await channel.close()


def main() -> None:
    settings = SidecarSettings.from_env()
    install_logging(settings.log_level, settings.log_format, settings.access_log)
    if not settings.effective_service_secret:
        sys.exit("refusing to start the sidecar: CONEXOES_SERVICE_TOKEN_SECRET is not set")
    configure_tracing(settings.otlp_endpoint)
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
