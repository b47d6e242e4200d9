"""HTTP/JSON gateway: serves the contract's `google.api.http` rules over a grpc.aio channel.

`build_gateway` is the entry point; the rest is exported for tests and tools (OpenAPI export).
"""

from __future__ import annotations

from .app import CatchAll, build_gateway
from .errors import HTTP_STATUS_BY_CODE, status_from_rpc_error, status_to_json
from .openapi import build_openapi
from .rules import HttpRule, Router, collect_rules, success_status
from .template import PathTemplate, parse_template
from .transcode import ResponseEncoder, TranscodeError, build_request
from .wire import WireCodec, wire_string

__all__ = [
    "HTTP_STATUS_BY_CODE",
    "CatchAll",
    "HttpRule",
    "PathTemplate",
    "ResponseEncoder",
    "Router",
    "TranscodeError",
    "WireCodec",
    "build_gateway",
    "build_openapi",
    "build_request",
    "collect_rules",
    "parse_template",
    "status_from_rpc_error",
    "status_to_json",
    "success_status",
    "wire_string",
]
