"""A failed RPC, told readably: status code, message, ErrorInfo reason, field violations, retry.

The server's errors carry the rich model in the `grpc-status-details-bin` trailer; this module
unpacks it so a person sees `INVALID_ARGUMENT  waha.base_url: must be an http(s) URL` instead of
a Python traceback.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from rich.console import Console
from rich.markup import escape

_HINTS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNIMPLEMENTED: "this server does not implement that call yet",
    grpc.StatusCode.PERMISSION_DENIED: "your token's role or grants do not allow this call",
}


def rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The server's google.rpc.Status, or None when it sent only a code and a message."""
    try:
        return rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:  # a trailer whose code disagrees with the call's: ignore it
        return None


def describe_rpc_error(
    error: grpc.RpcError, *, address: str = "", has_token: bool = True
) -> list[str]:
    """Lines (plain text) that explain the failure; the first names the status code."""
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    message: str = error.details() or ""  # type: ignore[attr-defined]
    lines = [f"{code.name}: {message}" if message else code.name]
    status = rich_status(error)
    for detail in status.details if status is not None else ():
        lines.extend(_describe_detail(detail))
    if code is grpc.StatusCode.UNAVAILABLE and address and "connect" in message.lower():
        lines.append(f"hint: is the server running at {address}? (make run, or --address)")
    elif code is grpc.StatusCode.UNAUTHENTICATED and not has_token:
        lines.append("hint: pass --token or set CONEXOES_TOKEN (mint one: conexoes token)")
    elif code in _HINTS:
        lines.append(f"hint: {_HINTS[code]}")
    return lines


def render_rpc_error(
    console: Console, error: grpc.RpcError, *, address: str = "", has_token: bool = True
) -> None:
    first, *rest = describe_rpc_error(error, address=address, has_token=has_token)
    console.print(f"[bold red]error[/] {escape(first)}")
    for line in rest:
        console.print(f"  {escape(line)}")


def _describe_detail(detail: Any) -> list[str]:
    if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
        info = error_details_pb2.ErrorInfo()
        detail.Unpack(info)
        extra = ", ".join(f"{k}={v}" for k, v in sorted(info.metadata.items()))
        return [f"reason: {info.reason}" + (f" ({extra})" if extra else "")]
    if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
        bad = error_details_pb2.BadRequest()
        detail.Unpack(bad)
        return [f"field {v.field or '(request)'}: {v.description}" for v in bad.field_violations]
    if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
        retry = error_details_pb2.RetryInfo()
        detail.Unpack(retry)
        seconds = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
        return [f"retry after {seconds:g}s"]
    if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
        failure = error_details_pb2.PreconditionFailure()
        detail.Unpack(failure)
        return [f"precondition {v.type} {v.subject}: {v.description}" for v in failure.violations]
    if detail.Is(error_details_pb2.LocalizedMessage.DESCRIPTOR):
        localized = error_details_pb2.LocalizedMessage()
        detail.Unpack(localized)
        return [localized.message]
    # Unknown detail types still show (by type) rather than vanish.
    return [f"detail {detail.type_url}"]
