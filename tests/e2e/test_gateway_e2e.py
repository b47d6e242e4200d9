"""Every spec endpoint through the real sidecar (HTTP) and straight to the server (gRPC): same
result both ways. Plus the error mapping a frontend depends on (400/401/403/404/429/503).

An RPC whose room is not built yet answers UNIMPLEMENTED over gRPC and 501 over HTTP: still
"the same result", so this test needs no change as rooms land.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest
import pytest_asyncio
from google.api import field_behavior_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from renove.conexoes.v1 import webhook_ingress_service_pb2 as ingress_pb

from server.auth.caller import Role
from tests.e2e.gateway_stack import (
    GRPC_GATEWAY_HTTP_STATUS,
    error_reason,
    field_violations,
    running_sidecar,
    status_json,
)
from tests.support.whatsapp_stack import Stack, whatsapp_stack
from tests.unit.test_contract import SPEC_ENDPOINTS
from webhooks_http.app import contract_files
from webhooks_http.gateway import HttpRule, collect_rules, wire_string

RULES: dict[tuple[str, str], HttpRule] = {
    (rule.method, rule.path_template): rule for rule in collect_rules(contract_files())
}
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
# Values that legitimately differ between two calls a moment apart.
_VOLATILE_KEYS = {"state", "as_of", "expires_at", "window_start", "window_end", "sent_at"}


@pytest_asyncio.fixture(scope="module")
async def sidecar(server: Any) -> AsyncIterator[str]:
    async with running_sidecar(server.deps.settings, server.channel) as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def http(sidecar: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sidecar, timeout=15.0) as client:
        yield client


def _path_value(name: str) -> str:
    return "1234567890" if name.endswith("page_id") else str(uuid.uuid4())


def _strip_input_only(data: Any, descriptor: Descriptor) -> None:
    """INPUT_ONLY fields (secrets) are never printed by the gateway, even empty; an unset
    message field outside a oneof is printed as null."""
    if not isinstance(data, dict):
        return
    for field in descriptor.fields:
        behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
        if field_behavior_pb2.INPUT_ONLY in behaviors:
            data.pop(field.name, None)
        elif _printed_as_null(field) and field.name not in data:
            data[field.name] = None
        elif field.message_type is not None and field.name in data:
            value = data[field.name]
            for item in value if isinstance(value, list) else [value]:
                _strip_input_only(item, field.message_type)


def _printed_as_null(field: FieldDescriptor) -> bool:
    message = field.message_type
    if message is None or field.is_repeated or message.GetOptions().map_entry:
        return False
    oneof = field.containing_oneof
    synthetic = oneof is not None and len(oneof.fields) == 1 and oneof.name == f"_{field.name}"
    return message.full_name != "google.protobuf.Value" and (oneof is None or synthetic)


def _wire_strings() -> dict[str, str]:
    """Every contract enum value name -> its (renove.conexoes.v1.wire) string."""
    names: dict[str, str] = {}
    for rule in RULES.values():
        for message in (rule.method_descriptor.input_type, rule.method_descriptor.output_type):
            for enum in message.file.enum_types_by_name.values():
                names.update({v.name: wire_string(v) or v.name for v in enum.values})
            for dependency in message.file.dependencies:
                for enum in dependency.enum_types_by_name.values():
                    names.update({v.name: wire_string(v) or v.name for v in enum.values})
    return names


WIRE = _wire_strings()


def _as_wire(value: Any) -> Any:
    """proto3 JSON's enum names -> the wire strings the gateway speaks."""
    if isinstance(value, dict):
        return {k: _as_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_wire(v) for v in value]
    return WIRE.get(value, value) if isinstance(value, str) else value


def _response_json(reply: Message, rule: HttpRule) -> Any:
    data = _as_wire(
        json_format.MessageToDict(
            reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    )
    _strip_input_only(data, reply.DESCRIPTOR)
    if rule.response_body:
        return data.get(rule.response_body) or {}
    return data


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<v>" if k in _VOLATILE_KEYS else _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, str) and _TIMESTAMP.match(value):
        return "<time>"
    if isinstance(value, str) and "state=" in value:
        return re.sub(r"state=[^&]+", "state=<v>", value)
    return value


def _grpc_call(server: Any, rule: HttpRule, request: Message) -> Any:
    desc = rule.method_descriptor
    response_class = message_factory.GetMessageClass(desc.output_type)
    return server.channel.unary_unary(
        rule.grpc_path,
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_class.FromString,
    )


API_ENDPOINTS = [
    e for e in SPEC_ENDPOINTS if e[1].startswith("/api/") and not e[1].endswith("/callback")
]
CALLBACKS = [e for e in SPEC_ENDPOINTS if e[1].endswith("/callback")]
WEBHOOKS = [e for e in SPEC_ENDPOINTS if e[1].startswith("/webhooks/")]


def test_the_three_groups_cover_the_54_spec_endpoints() -> None:
    assert len(API_ENDPOINTS) + len(CALLBACKS) + len(WEBHOOKS) == len(SPEC_ENDPOINTS) == 54
    assert all(endpoint in RULES for endpoint in SPEC_ENDPOINTS)


@pytest.mark.parametrize(
    ("method", "path"), API_ENDPOINTS, ids=[f"{m} {p}" for m, p in API_ENDPOINTS]
)
async def test_endpoint_gives_the_same_result_over_http_and_grpc(
    method: str, path: str, server: Any, http: httpx.AsyncClient, make_tenant: Any, make_caller: Any
) -> None:
    rule = RULES[(method, path)]
    tenant = await make_tenant()
    token = server.token(make_caller(tenant, Role.ADMIN))
    request_class = message_factory.GetMessageClass(rule.method_descriptor.input_type)
    fields: dict[str, Any] = {}
    url = path
    for variable in re.findall(r"{([^}=]+)}", path):
        value = _path_value(variable)
        fields[variable] = value
        url = url.replace(f"{{{variable}}}", value)
    body: dict[str, Any] = {}
    if "request_id" in request_class.DESCRIPTOR.fields_by_name:
        # The same AIP-155 id both ways: a mutating RPC answers the repeat with its first result.
        body["request_id"] = fields["request_id"] = str(uuid.uuid4())
    request = json_format.ParseDict(fields, request_class())

    try:
        reply = await _grpc_call(server, rule, request)(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=15
        )
        expected_status, expected = rule.success_status, _response_json(reply, rule)
    except grpc.aio.AioRpcError as exc:
        expected = status_json(exc)
        expected_status = GRPC_GATEWAY_HTTP_STATUS[expected["code"]]

    kwargs: dict[str, Any] = {"headers": {"authorization": f"Bearer {token}"}}
    if rule.body:
        kwargs["json"] = body if rule.body == "*" else {}
    elif body:
        kwargs["params"] = body
    response = await http.request(method, url, **kwargs)

    assert response.status_code == expected_status, response.text
    assert _normalize(response.json()) == _normalize(expected)


@pytest.mark.parametrize(("method", "path"), CALLBACKS, ids=[p for _, p in CALLBACKS])
async def test_oauth_callback_redirects_with_the_rpc_outcome(
    method: str, path: str, server: Any, http: httpx.AsyncClient
) -> None:
    rule = RULES[(method, path)]
    request_class = message_factory.GetMessageClass(rule.method_descriptor.input_type)
    query = {"code": "abc", "state": "not-a-state"}
    service = server.metadata(server.service_caller())
    expected_location: str | None = None
    expected_reason: str | None = None
    try:
        reply = await _grpc_call(server, rule, request_class(**query))(
            request_class(**query), metadata=service, timeout=15
        )
        expected_location = reply.result.redirect_url
    except grpc.aio.AioRpcError as exc:
        # A failed exchange still lands on the frontend, with the error's reason.
        expected_reason = error_reason(status_json(exc)) or exc.code().name

    response = await http.get(path, params=query)

    assert response.status_code == 302
    location = response.headers["location"]
    frontend = urlsplit(server.deps.settings.frontend_url)
    assert urlsplit(location)[:2] == (frontend.scheme, frontend.netloc)
    if expected_location is not None:
        assert location == expected_location
    else:
        assert parse_qs(urlsplit(location).query).get("motivo", [None])[0] == expected_reason


_WEBHOOK_RPCS = {
    "/webhooks/waha/{tenant_id}": "DeliverWahaWebhook",
    "/webhooks/meta-leads": "DeliverMetaLeadsWebhook",
}


@pytest.mark.parametrize(("method", "path"), WEBHOOKS, ids=[p for _, p in WEBHOOKS])
async def test_webhook_answer_is_the_servers_verdict(
    method: str, path: str, server: Any, http: httpx.AsyncClient
) -> None:
    tenant_id = str(uuid.uuid4())
    url = path.replace("{tenant_id}", tenant_id)
    body = b'{"event": "session.status", "object": "page", "entry": []}'
    raw = ingress_pb.RawHttpRequest(
        method=method,
        path=url,
        headers=[ingress_pb.HttpHeader(name="content-type", value="application/json")],
        body=body,
        remote_addr="127.0.0.1:1",
        host="127.0.0.1",
    )
    stub_request: Message
    if "{tenant_id}" in path:
        stub_request = ingress_pb.DeliverWahaWebhookRequest(tenant_id=tenant_id, request=raw)
    else:
        stub_request = ingress_pb.DeliverMetaLeadsWebhookRequest(request=raw)
    rule = RULES[(method, path)]
    reply = await _grpc_call(server, rule, stub_request)(
        stub_request, metadata=server.metadata(server.service_caller()), timeout=15
    )

    response = await http.post(url, content=body, headers={"content-type": "application/json"})

    assert rule.method_descriptor.name == _WEBHOOK_RPCS[path]
    assert response.status_code == reply.response.status_code
    assert response.status_code in (400, 401, 404)  # unsigned: never accepted
    assert response.content == reply.response.body


# --- error mapping on real paths -------------------------------------------------------------


async def _same_error(
    server: Any,
    http: httpx.AsyncClient,
    rule_key: tuple[str, str],
    url: str,
    token: str | None,
    fields: dict[str, Any],
    body: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """The HTTP error and the gRPC error for one request: asserted equal, returned for checks."""
    rule = RULES[rule_key]
    request_class = message_factory.GetMessageClass(rule.method_descriptor.input_type)
    request = json_format.ParseDict({**(body or {}), **fields}, request_class())
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await _grpc_call(server, rule, request)(request, metadata=metadata, timeout=15)
    expected = status_json(failure.value)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await http.request(rule_key[0], url, json=body, headers=headers)
    assert response.status_code == GRPC_GATEWAY_HTTP_STATUS[expected["code"]]
    assert response.json() == expected
    return response.status_code, response.json()


async def test_400_carries_field_violations(server: Any, http: httpx.AsyncClient) -> None:
    path = "/api/v1/conexoes/plataforma/credenciais/{provider}"
    status, body = await _same_error(
        server,
        http,
        ("PATCH", path),
        path.replace("{provider}", "PLATFORM_PROVIDER_WAHA"),
        server.token(server.super_admin()),
        {"provider": "PLATFORM_PROVIDER_WAHA"},
        {"waha": {"base_url": "ftp://nope"}},
    )
    assert status == 400
    assert any("base_url" in field for field in field_violations(body))


@pytest.mark.parametrize("token", [None, "not-a-jwt"], ids=["no token", "bad token"])
async def test_401_without_a_valid_token(
    token: str | None, server: Any, http: httpx.AsyncClient
) -> None:
    path = "/api/v1/conexoes/permissoes"
    status, _ = await _same_error(server, http, ("GET", path), path, token, {})
    assert status == 401


async def test_403_member_on_an_admin_endpoint(
    server: Any, http: httpx.AsyncClient, make_tenant: Any, make_caller: Any
) -> None:
    member = server.token(make_caller(await make_tenant(), Role.MEMBER))
    path = "/api/v1/conexoes/permissoes"
    status, body = await _same_error(server, http, ("GET", path), path, member, {})
    assert status == 403
    assert error_reason(body)


async def test_404_unknown_member(
    server: Any, http: httpx.AsyncClient, make_tenant: Any, make_caller: Any
) -> None:
    admin = server.token(make_caller(await make_tenant(), Role.ADMIN))
    path = "/api/v1/conexoes/permissoes/{usuario_id}"
    user = str(uuid.uuid4())
    status, _ = await _same_error(
        server,
        http,
        ("PATCH", path),
        path.replace("{usuario_id}", user),
        admin,
        {"usuario_id": user},
        {"meta_lead_ads": True},
    )
    assert status == 404


@pytest_asyncio.fixture(scope="module")
async def wa_stack(database: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """WAHA played by the sandbox, whose faults give the provider-side 429 and 503."""
    async with whatsapp_stack(database.owner_url, str(tmp_path_factory.mktemp("gw-wa"))) as s:
        yield s


@pytest.mark.parametrize(
    ("fault", "http_status", "reasons"),
    [
        ({"status": 429, "retryAfter": 7}, 429, {"RATE_LIMITED"}),
        ({"status": 503}, 503, {"PROVIDER_UNAVAILABLE", "CIRCUIT_OPEN"}),
    ],
    ids=["429 provider rate limit", "503 provider down"],
)
async def test_provider_failures_surface_as_429_and_503(
    fault: dict[str, Any],
    http_status: int,
    reasons: set[str],
    wa_stack: Stack,
    make_tenant: Any,
    make_caller: Any,
) -> None:
    """StartWhatsAppSession calls WAHA at once: WAHA's 429 / 503 reach the browser mapped."""
    server = wa_stack.server
    path = "/api/v1/conexoes/whatsapp/iniciar"
    token = server.token(make_caller(await make_tenant(), Role.MEMBER))
    await wa_stack.control("faults", {**fault, "count": 50})
    try:
        async with httpx.AsyncClient(base_url=wa_stack.sidecar_url, timeout=30.0) as http:
            status, body = await _same_error(
                server, http, ("POST", path), path, token, {}, {"request_id": str(uuid.uuid4())}
            )
    finally:
        await wa_stack.http.delete(f"{wa_stack.waha_url}/_control/faults")
    assert status == http_status
    assert error_reason(body) in reasons
