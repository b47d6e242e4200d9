"""gRPC status -> HTTP: the status code table and the `google.rpc.Status` JSON body.

The table is grpc-gateway's (runtime/errors.go, HTTPStatusFromCode), so a frontend sees the same
statuses whether it talks to this gateway or to grpc-gateway/Envoy in front of the same contract.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import grpc
from google.protobuf import duration_pb2, json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"

HTTP_STATUS_BY_CODE: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

# Gateway-side failures reuse the gRPC vocabulary, so every error body has one shape.
_CODE_BY_HTTP_STATUS: Mapping[int, int] = {
    400: code_pb2.INVALID_ARGUMENT,
    404: code_pb2.NOT_FOUND,
    405: code_pb2.UNIMPLEMENTED,
    406: code_pb2.INVALID_ARGUMENT,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    500: code_pb2.INTERNAL,
}


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS_BY_CODE.get(code, 500)


def http_status_of(status: status_pb2.Status) -> int:
    """The HTTP status for a `google.rpc.Status` (its code is the int of a grpc.StatusCode)."""
    for code in grpc.StatusCode:
        if code.value[0] == status.code:
            return http_status(code)
    return 500


def status_to_json(status: status_pb2.Status) -> dict[str, object]:
    """The Status as proto3 JSON; details keep their `@type` and use proto field names."""
    return json_format.MessageToDict(
        status, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def status_from_rpc_error(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The rich status a server sent, or a plain one built from the code and message.

    The details come from the `grpc-status-details-bin` trailer (what `grpc_status.rpc_status`
    writes); a trailer whose code disagrees with the call's is ignored, as grpc_status does.
    """
    code = error.code()
    fallback = status_pb2.Status(code=code.value[0], message=error.details() or "")
    if code in _TRANSPORT_CODES and not _has_details(error):
        return _unreachable()
    for key, value in _metadata_items(error.trailing_metadata()):
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            rich = status_pb2.Status.FromString(value)
        except DecodeError:
            return fallback
        return rich if rich.code == fallback.code else fallback
    return fallback


# Codes grpc itself raises when the server cannot be reached: its message names internal
# addresses ("ipv4:10.0.3.7:50051: Connection refused"), which the public never sees.
_TRANSPORT_CODES = (grpc.StatusCode.UNAVAILABLE,)
UNREACHABLE_RETRY_S = 5


def _has_details(error: grpc.aio.AioRpcError) -> bool:
    return any(key == STATUS_DETAILS_KEY for key, _ in _metadata_items(error.trailing_metadata()))


def _unreachable() -> status_pb2.Status:
    """The server is down or unreachable: a generic message and a RetryInfo (Retry-After)."""
    status = status_pb2.Status(
        code=code_pb2.UNAVAILABLE, message="the service is temporarily unavailable; retry later"
    )
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(reason="SERVICE_UNAVAILABLE", domain="conexoes.renove.com.br")
    )
    status.details.add().Pack(
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=UNREACHABLE_RETRY_S))
    )
    return status


def gateway_status(
    http: int, message: str, *, violations: Iterable[tuple[str, str]] = ()
) -> status_pb2.Status:
    """A Status for an error the gateway itself raises (bad JSON, no route, too large)."""
    status = status_pb2.Status(
        code=_CODE_BY_HTTP_STATUS.get(http, code_pb2.UNKNOWN), message=message
    )
    items = [
        error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
        for field, description in violations
    ]
    if items:
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=items))
    return status


def retry_after_seconds(status: status_pb2.Status) -> int | None:
    """Whole seconds from a RetryInfo detail, rounded up, for the `Retry-After` header."""
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            return max(0, math.ceil(delay))
    return None


def error_headers(status: status_pb2.Status) -> dict[str, str]:
    retry_after = retry_after_seconds(status)
    return {} if retry_after is None else {"Retry-After": str(retry_after)}


def _metadata_items(metadata: object) -> Iterable[tuple[str, str | bytes]]:
    if metadata is None:
        return ()
    return [(str(k), v) for k, v in metadata]  # type: ignore[attr-defined]
