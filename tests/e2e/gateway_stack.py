"""The sidecar (its own routes + the JSON gateway) on a real uvicorn in front of a running server.

Shared by the gateway end-to-end tests: the same app `python -m webhooks_http` serves, built
by `build_sidecar_app`, with a rate limit high enough that a test burst never meets it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from server.settings import Settings
from webhooks_http.app import SidecarOptions, build_sidecar_app
from webhooks_http.ratelimit import RateLimitOptions
from webhooks_http.runner import serve_in_background

# grpc-gateway's table (runtime/errors.go HTTPStatusFromCode), written out here on purpose:
# the tests hold the gateway to it rather than to its own copy.
GRPC_GATEWAY_HTTP_STATUS: dict[int, int] = {
    code_pb2.OK: 200,
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
}


@asynccontextmanager
async def running_sidecar(settings: Settings, channel: grpc.aio.Channel) -> AsyncIterator[str]:
    """The sidecar app on a loopback port; yields its base URL."""
    options = SidecarOptions(rate_limit=RateLimitOptions(rate_per_second=10_000.0, burst=100_000))
    app = build_sidecar_app(settings, channel, options=options)
    async with serve_in_background(app) as sidecar:
        yield sidecar.url


def status_json(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The google.rpc.Status a gRPC client sees, as the JSON grpc-gateway would print it."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        status = status_pb2.Status(code=error.code().value[0], message=error.details() or "")
    return json_format.MessageToDict(
        status, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def error_reason(body: dict[str, Any]) -> str | None:
    for detail in body.get("details", []):
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail.get("reason"))
    return None


def field_violations(body: dict[str, Any]) -> list[str]:
    return [
        violation["field"]
        for detail in body.get("details", [])
        if detail.get("@type", "").endswith("google.rpc.BadRequest")
        for violation in detail.get("field_violations", [])
    ]
