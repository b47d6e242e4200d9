"""What the sidecar needs to know about a failed call to the gRPC server."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

# The server or its database could not take the request now: the provider should retry.
# INVALID_ARGUMENT is the only verdict on the request itself; anything else (including an
# UNAUTHENTICATED sidecar token, a deployment fault) must not make a provider drop the event.
FINAL_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT})
DEFAULT_RETRY_AFTER_S = 5.0
_DETAILS_KEY = "grpc-status-details-bin"


def _status(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    for key, value in error.trailing_metadata() or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:  # a garbled detail must not hide the call's own code
                return None
            return status
    return None


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call, or its status code name."""
    status = _status(error)
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.reason:
                return info.reason
    return error.code().name


def retry_after(error: grpc.aio.AioRpcError, default: float = DEFAULT_RETRY_AFTER_S) -> float:
    """The RetryInfo delay of a failed call, or `default`."""
    status = _status(error)
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return max(1.0, info.retry_delay.ToTimedelta().total_seconds())
    return default
