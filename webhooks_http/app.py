"""The sidecar's app factory: webhook routes, OAuth callbacks, health, then the JSON gateway.

Route order is the precedence: the sidecar's own routes first, the gateway (which would take
any /api/ path) last.
"""

from __future__ import annotations

import importlib
import pkgutil

import grpc
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from webhooks_http.ingress import WebhookForwarder
from webhooks_http.oauth import OAuthRedirects
from webhooks_http.observability import ObservedEdge, metrics_route
from webhooks_http.ratelimit import TokenBucketLimiter, client_address
from webhooks_http.service_identity import ServiceIdentity
from webhooks_http.settings import SidecarConfig, SidecarOptions
from webhooks_http.tracking import OpenPixel

__all__ = ["SidecarOptions", "build_sidecar_app", "contract_files", "mount_gateway"]

CONTRACT_PACKAGE = "renove.conexoes.v1"


def contract_files() -> list[FileDescriptor]:
    """Every service file of the contract (their google.api.http rules feed the gateway)."""
    package = importlib.import_module(CONTRACT_PACKAGE)
    return [
        importlib.import_module(f"{CONTRACT_PACKAGE}.{m.name}").DESCRIPTOR
        for m in pkgutil.iter_modules(package.__path__)
        if m.name.endswith("_service_pb2")
    ]


def mount_gateway(
    routes: list[BaseRoute],
    channel: grpc.aio.Channel,
    settings: SidecarConfig,
    options: SidecarOptions | None = None,
) -> list[BaseRoute]:
    """Appends the HTTP/JSON gateway as the catch-all after the sidecar's own routes."""
    from webhooks_http.gateway import CatchAll, build_gateway

    options = options or SidecarOptions()
    proxies = options.rate_limit.trusted_proxies
    gateway = build_gateway(
        contract_files(),
        channel,
        cors_origins=settings.cors_origins,
        max_body_bytes=settings.max_webhook_bytes,
        max_streams_per_address=options.max_streams_per_address,
        client_address=lambda scope: client_address(scope, proxies)[0],
    )
    return [*routes, CatchAll(gateway)]


def build_sidecar_app(
    settings: SidecarConfig,
    channel: grpc.aio.Channel,
    *,
    options: SidecarOptions | None = None,
    identity: ServiceIdentity | None = None,
) -> Starlette:
    """The sidecar as an ASGI app, calling the gRPC server over `channel`.

    Args:
        settings: the shared configuration (max_webhook_bytes, frontend_url, JWT secret).
        channel: a grpc.aio channel to the server, used from the app's event loop.
        options: sidecar-only settings (SidecarSettings.options); defaults when omitted.
        identity: the service identity; minted from the settings' JWT secret when omitted.
    """
    options = options or SidecarOptions()
    identity = identity or ServiceIdentity.from_settings(settings)
    limits = options.rate_limit
    limiter = TokenBucketLimiter(limits.rate_per_second, limits.burst)
    webhooks = WebhookForwarder(
        channel,
        identity,
        limiter,
        max_body_bytes=settings.max_webhook_bytes,
        deadline_s=options.webhook_deadline_s,
        trusted_proxies=limits.trusted_proxies,
    )
    oauth = OAuthRedirects(
        channel,
        identity,
        limiter,
        frontend_url=settings.frontend_url,
        trusted_proxies=limits.trusted_proxies,
    )
    pixel = OpenPixel(channel, identity, limiter, trusted_proxies=limits.trusted_proxies)
    health = health_pb2_grpc.HealthStub(channel)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        try:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
        except grpc.aio.AioRpcError as exc:
            return JSONResponse({"status": "unavailable", "grpc": exc.code().name}, 503)
        serving = reply.status == health_pb2.HealthCheckResponse.SERVING
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return JSONResponse({"status": "ready" if serving else "not_ready", "grpc": name},
                            200 if serving else 503)  # fmt: skip

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *webhooks.routes(),
        *oauth.routes(),
        *pixel.routes(),
    ]
    if options.observability:
        routes.append(metrics_route())
    if options.mount_gateway:
        routes = mount_gateway(routes, channel, settings, options)
    app = Starlette(routes=routes)
    if options.observability:
        app.add_middleware(ObservedEdge, routes=routes)
    return app
