"""The raw HTTP exchange the sidecar forwards: reading a request, writing the answer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb

from server.ingress.inbox import Stored
from server.ingress.routes import BodyExtractor, InboundEvent, Malformed
from server.ingress.signatures import header_map

Outcome = pb.DeliveryOutcome
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


def answer(status: int, body: dict[str, Any]) -> pb.RawHttpResponse:
    return pb.RawHttpResponse(
        status_code=status,
        content_type=JSON,
        body=json.dumps(body, separators=(",", ":")).encode(),
    )


def headers_of(request: pb.RawHttpRequest) -> dict[str, str]:
    return header_map((h.name, h.value) for h in request.headers)


def query_of(request: pb.RawHttpRequest) -> list[tuple[str, str]]:
    if request.query:
        return [(q.name, q.value) for q in request.query]
    return parse_qsl(request.raw_query, keep_blank_values=True)


# No provider nests its payloads anywhere near this deep.
MAX_DEPTH = 32


def parse(request: pb.RawHttpRequest, extract: BodyExtractor) -> list[InboundEvent]:
    """The provider's JSON body as events; Malformed (a 400) for anything we could never store.

    A signed body that cannot be parsed or stored must be answered 400, not 503: the provider
    would otherwise retry a poison message for days.
    """
    try:
        body = json.loads(request.body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise Malformed("the body is not JSON") from exc
    except RecursionError as exc:
        raise Malformed(f"the body nests deeper than {MAX_DEPTH} levels") from exc
    _check_storable(body)
    return extract(body, request.body)


def _check_storable(body: Any) -> None:
    """Raises Malformed for nesting beyond MAX_DEPTH or a NUL character in any key or string
    (PostgreSQL's text and jsonb cannot hold one)."""
    pending: list[tuple[Any, int]] = [(body, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise Malformed(f"the body nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            if "\x00" in value:
                raise Malformed("the body holds a NUL character")
        elif isinstance(value, dict):
            pending.extend((k, depth) for k in value)
            pending.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            pending.extend((v, depth + 1) for v in value)


def summary(
    stored: Sequence[Stored], unknown: int
) -> tuple[pb.DeliveryOutcome.ValueType, pb.RawHttpResponse]:
    """The outcome and 200 answer of a delivery whose events were stored (or turned away)."""
    accepted = sum(1 for s in stored if s.tenant_id is not None and not s.duplicate)
    duplicates = sum(1 for s in stored if s.tenant_id is not None and s.duplicate)
    if accepted or not (duplicates or unknown):
        outcome, status = Outcome.DELIVERY_OUTCOME_ACCEPTED, "accepted"
    elif duplicates:
        outcome, status = Outcome.DELIVERY_OUTCOME_DUPLICATE, "duplicate"
    else:
        outcome, status = Outcome.DELIVERY_OUTCOME_UNKNOWN_RECIPIENT, "unknown_recipient"
    body = {"status": status, "accepted": accepted, "duplicates": duplicates, "unknown": unknown}
    return outcome, answer(200, body)
