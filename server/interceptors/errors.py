"""Maps the domain error tree to gRPC statuses with google.rpc details (for every call, through
the call guard, guard.py)."""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.errors import DOMAIN, DomainError, InvalidArgument
from server.interceptors.outages import as_unavailable
from server.security.redaction import redact

_log = logging.getLogger(__name__)


def to_status(error: DomainError) -> status_pb2.Status:
    status = status_pb2.Status(code=error.grpc_code.value[0], message=redact(error.message))
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN)
    info.metadata.update({k: redact(str(v)) for k, v in error.metadata.items()})
    status.details.add().Pack(info)
    if isinstance(error, InvalidArgument) and error.violations:
        bad = error_details_pb2.BadRequest()
        for v in error.violations:
            bad.field_violations.add(field=v.field, description=v.description)
        status.details.add().Pack(bad)
    if error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after * 1000))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


async def abort_with(
    error: BaseException, method: str, context: grpc.aio.ServicerContext
) -> NoReturn:
    outage = as_unavailable(error)
    if outage is not None:
        _log.warning("database unavailable in %s: %s", method, type(error).__name__)
        error = outage
    if isinstance(error, DomainError):
        await context.abort_with_status(rpc_status.to_status(to_status(error)))
    if isinstance(error, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not available yet")
    _log.exception("unexpected error in %s", method, exc_info=error)
    status = status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")
    await context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


def is_abort(exc: BaseException) -> bool:
    # context.abort() raises grpc.aio.AbortError; it must pass through untouched.
    return isinstance(exc, grpc.aio.AbortError | grpc.aio.UsageError)
