"""The gRPC contract (protos/renove/conexoes/v1) against the spec and our API rules.

Reads the compiled descriptors from generated/ (the import root for `renove.conexoes.v1`).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    FileDescriptor,
    MethodDescriptor,
)

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "generated"
if str(GENERATED) not in sys.path:
    sys.path.insert(0, str(GENERATED))

PACKAGE = "renove.conexoes.v1"

# Every row of the endpoint tables of the product spec (PRD-08, sections 1.5, 2.5, 3.5,
# 4.4, 5.2.5, 6.6, 7.6): 54 rows, `:param` written `{param}`. One correction (no router can
# tell the spec's own route from another):
# the spec's `GET /api/v1/conexoes/meta/formularios/:page_id` (list a page's forms) is
# `GET /api/v1/conexoes/meta/paginas/{page_id}/formularios`.
SPEC_ENDPOINTS: list[tuple[str, str]] = [
    # 1.5 WhatsApp
    ("POST", "/api/v1/conexoes/whatsapp/iniciar"),
    ("GET", "/api/v1/conexoes/whatsapp/qr-code"),
    ("GET", "/api/v1/conexoes/whatsapp/status"),
    ("POST", "/api/v1/conexoes/whatsapp/desconectar"),
    ("POST", "/webhooks/waha/{tenant_id}"),
    # 2.5 Meta Lead Ads
    ("GET", "/api/v1/conexoes/meta/auth-url"),
    ("GET", "/api/v1/conexoes/meta/callback"),
    ("GET", "/api/v1/conexoes/meta"),
    ("DELETE", "/api/v1/conexoes/meta"),
    ("GET", "/api/v1/conexoes/meta/paginas"),
    ("POST", "/api/v1/conexoes/meta/paginas/{page_id}/selecionar"),
    ("GET", "/api/v1/conexoes/meta/paginas/{page_id}/formularios"),  # the corrected route
    ("POST", "/api/v1/conexoes/meta/formularios"),
    ("GET", "/api/v1/conexoes/meta/formularios/{id}"),
    ("PATCH", "/api/v1/conexoes/meta/formularios/{id}"),
    ("DELETE", "/api/v1/conexoes/meta/formularios/{id}"),
    ("POST", "/webhooks/meta-leads"),
    # 3.5 Conversions API
    ("GET", "/api/v1/conexoes/meta/capi"),
    ("POST", "/api/v1/conexoes/meta/capi"),
    ("POST", "/api/v1/conexoes/meta/capi/testar"),
    ("GET", "/api/v1/conexoes/meta/capi/logs"),
    ("GET", "/api/v1/conexoes/meta/capi/stats"),
    # 4.4 Custom Audiences
    ("GET", "/api/v1/conexoes/meta/audiences"),
    ("POST", "/api/v1/conexoes/meta/audiences"),
    ("GET", "/api/v1/conexoes/meta/audiences/{id}"),
    ("PATCH", "/api/v1/conexoes/meta/audiences/{id}"),
    ("DELETE", "/api/v1/conexoes/meta/audiences/{id}"),
    ("POST", "/api/v1/conexoes/meta/audiences/{id}/sync"),
    ("GET", "/api/v1/conexoes/meta/audiences/{id}/membros"),
    # 5.2.5 Google Calendar
    ("GET", "/api/v1/conexoes/google/auth-url"),
    ("GET", "/api/v1/conexoes/google/callback"),
    ("GET", "/api/v1/conexoes/google"),
    ("DELETE", "/api/v1/conexoes/google"),
    ("GET", "/api/v1/conexoes/google/calendarios"),
    ("PATCH", "/api/v1/conexoes/google/calendario"),
    ("POST", "/api/v1/conexoes/google/eventos"),
    ("PATCH", "/api/v1/conexoes/google/eventos/{id}"),
    ("DELETE", "/api/v1/conexoes/google/eventos/{id}"),
    # 6.6 E-mail
    ("GET", "/api/v1/conexoes/email/google/auth-url"),
    ("GET", "/api/v1/conexoes/email/google/callback"),
    ("POST", "/api/v1/conexoes/email/smtp"),
    ("POST", "/api/v1/conexoes/email/smtp/testar"),
    ("POST", "/api/v1/conexoes/email/smtp/detectar"),
    ("GET", "/api/v1/conexoes/email"),
    ("DELETE", "/api/v1/conexoes/email"),
    ("POST", "/api/v1/conexoes/email/enviar"),
    # 7.6 Instagram Direct
    ("GET", "/api/v1/conexoes/instagram/auth-url"),
    ("GET", "/api/v1/conexoes/instagram/callback"),
    ("GET", "/api/v1/conexoes/instagram"),
    ("DELETE", "/api/v1/conexoes/instagram"),
    ("POST", "/api/v1/conexoes/instagram/mensagens"),
    ("GET", "/api/v1/conexoes/instagram/conversas"),
    ("GET", "/api/v1/conexoes/instagram/conversas/{id}"),
    ("POST", "/api/v1/conexoes/instagram/refresh-token"),
]

EXPECTED_SERVICES = {
    "WhatsAppService",
    "MetaLeadsService",
    "ConversionsService",
    "AudiencesService",
    "GoogleCalendarService",
    "EmailService",
    "InstagramService",
    "ConnectionsService",
    "WebhookIngressService",
    "CrmEventsService",
    "CrmDirectoryService",
    "OutboundWebhooksService",
    "KpisService",
}

# Field names that would carry a secret. `*_set` booleans and expiry times are fine: the rule
# below only allows non-string/bytes/message types (bool, enum, number, Timestamp) for them.
_SECRET_NAME = re.compile(r"token|secret|password|senha|api_key|hmac", re.IGNORECASE)
_PAGINATION_TOKENS = {"page_token", "next_page_token"}
_SAFE_SECRET_MESSAGES = {"google.protobuf.Timestamp", "google.protobuf.Duration"}
# Secrets a response shows exactly once, on purpose: an outbound webhook's signing secret is
# generated here and the admin must copy it when the endpoint is created.
_SHOWN_ONCE = {"CreateOutboundWebhookResponse.secret"}

_MUTATING = {"POST", "PATCH", "DELETE", "PUT"}


def _proto_modules() -> list[str]:
    package = importlib.import_module(PACKAGE)
    return sorted(
        f"{PACKAGE}.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.endswith("_pb2")
    )


def _files() -> list[FileDescriptor]:
    return [importlib.import_module(name).DESCRIPTOR for name in _proto_modules()]


def _methods() -> Iterator[tuple[str, MethodDescriptor]]:
    for file in _files():
        for service in file.services_by_name.values():
            for method in service.methods:
                yield f"{service.name}.{method.name}", method


def _http_rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    return options.Extensions[annotations_pb2.http]


def _verb_and_path(rule: http_pb2.HttpRule) -> tuple[str, str]:
    pattern = rule.WhichOneof("pattern")
    assert pattern is not None and pattern != "custom", rule
    return pattern.upper(), getattr(rule, pattern)


def _bindings() -> dict[str, tuple[str, str]]:
    result: dict[str, tuple[str, str]] = {}
    for name, method in _methods():
        rule = _http_rule(method)
        if rule is not None:
            result[name] = _verb_and_path(rule)
    return result


def _behaviors(field: FieldDescriptor) -> set[int]:
    options = field.GetOptions()
    return set(options.Extensions[field_behavior_pb2.field_behavior])


def _is_webhook(name: str) -> bool:
    return name.startswith("WebhookIngressService.")


def _is_oauth_callback(name: str) -> bool:
    return name.split(".")[1].endswith("OAuthCallback")


def test_spec_table_has_54_unique_rows() -> None:
    assert len(SPEC_ENDPOINTS) == 54
    assert len(set(SPEC_ENDPOINTS)) == 54


def test_every_service_of_the_design_exists_in_our_package() -> None:
    services = {s.name for f in _files() for s in f.services_by_name.values()}
    assert services == EXPECTED_SERVICES
    assert all(f.package == PACKAGE for f in _files())


def test_every_spec_endpoint_is_an_rpc() -> None:
    present = set(_bindings().values())
    missing = [row for row in SPEC_ENDPOINTS if row not in present]
    assert not missing, f"spec endpoints without an RPC: {missing}"


def test_every_rpc_has_an_http_annotation() -> None:
    missing = [name for name, method in _methods() if _http_rule(method) is None]
    assert not missing, f"RPCs without google.api.http: {missing}"


def test_http_bindings_are_unique() -> None:
    seen: dict[tuple[str, str], str] = {}
    for name, binding in _bindings().items():
        assert binding not in seen, f"{name} and {seen[binding]} both bind {binding}"
        seen[binding] = name


def test_extra_routes_of_the_brief_exist() -> None:
    bindings = _bindings()
    assert bindings["WhatsAppService.WatchWhatsAppStatus"] == (
        "GET",
        "/api/v1/conexoes/whatsapp/status:watch",
    )
    assert bindings["ConnectionsService.WatchEvents"] == ("GET", "/api/v1/conexoes/eventos:watch")
    assert bindings["CrmEventsService.PublishPipelineEvent"] == (
        "POST",
        "/api/v1/conexoes/crm/eventos",
    )
    present = set(bindings.values())
    for route in [
        ("GET", "/webhooks/meta-leads"),
        ("POST", "/webhooks/instagram"),
        ("GET", "/webhooks/instagram"),
        ("POST", "/webhooks/google-calendar"),
    ]:
        assert route in present, route


def test_streaming_rpcs_are_server_streaming_with_heartbeats() -> None:
    for file in _files():
        for service in file.services_by_name.values():
            for method in service.methods:
                if method.name.startswith("Watch"):
                    assert method.server_streaming and not method.client_streaming
                    oneof = method.output_type.oneofs_by_name["kind"]
                    names = {f.name for f in oneof.fields}
                    assert {"snapshot", "heartbeat"} <= names, method.full_name
                else:
                    assert not method.server_streaming and not method.client_streaming


def test_http_rules_reference_real_fields() -> None:
    for name, method in _methods():
        rule = _http_rule(method)
        assert rule is not None
        _, path = _verb_and_path(rule)
        request = method.input_type
        for variable in re.findall(r"{([^}=]+)", path):
            assert variable in request.fields_by_name, f"{name}: path variable {variable}"
        if rule.body not in ("", "*"):
            assert rule.body in request.fields_by_name, f"{name}: body {rule.body}"
        if rule.response_body:
            response = method.output_type
            assert rule.response_body in response.fields_by_name, name
        verb, _ = _verb_and_path(rule)
        if verb in {"POST", "PATCH", "PUT"}:
            assert rule.body, f"{name}: {verb} without a body binding"
        else:
            assert not rule.body, f"{name}: {verb} with a body binding"


def _walk(message: Descriptor, trail: str, seen: set[str]) -> Iterator[tuple[str, FieldDescriptor]]:
    if message.full_name in seen:
        return
    seen = seen | {message.full_name}
    for field in message.fields:
        where = f"{trail}.{field.name}"
        yield where, field
        if field.message_type is not None:  # nested messages and map entries alike
            yield from _walk(field.message_type, where, seen)


def _secret_shaped(field: FieldDescriptor) -> bool:
    if field.name in _PAGINATION_TOKENS or not _SECRET_NAME.search(field.name):
        return False
    if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return True
    if field.message_type is not None:
        return field.message_type.full_name not in _SAFE_SECRET_MESSAGES
    return False  # bool (`*_set`, requires_app_password), enum (token_type), numbers, times


def test_no_response_carries_a_secret() -> None:
    leaks = [
        where
        for _, method in _methods()
        for where, field in _walk(method.output_type, method.output_type.name, set())
        if _secret_shaped(field) and where not in _SHOWN_ONCE
    ]
    assert not leaks, f"secret-like fields reachable from responses: {leaks}"


def test_secret_request_fields_are_input_only() -> None:
    input_only = field_behavior_pb2.FieldBehavior.INPUT_ONLY
    problems = [
        where
        for name, method in _methods()
        if not _is_webhook(name) and not _is_oauth_callback(name)
        for where, field in _walk(method.input_type, method.input_type.name, set())
        if _secret_shaped(field) and input_only not in _behaviors(field)
    ]
    assert not problems, f"secret-like request fields not marked INPUT_ONLY: {problems}"


def test_mutating_rpcs_take_a_request_id() -> None:
    missing = []
    for name, method in _methods():
        rule = _http_rule(method)
        assert rule is not None
        verb, _ = _verb_and_path(rule)
        if verb not in _MUTATING or _is_webhook(name) or _is_oauth_callback(name):
            continue
        field = method.input_type.fields_by_name.get("request_id")
        if field is None or field.type != FieldDescriptor.TYPE_STRING:
            missing.append(name)
    assert not missing, f"mutating RPCs without `string request_id`: {missing}"


def test_oauth_callbacks_are_get() -> None:
    bindings = _bindings()
    callbacks = {name: b for name, b in bindings.items() if _is_oauth_callback(name)}
    assert len(callbacks) == 4
    assert all(verb == "GET" and path.endswith("/callback") for verb, path in callbacks.values())


def test_webhook_rpcs_share_the_raw_http_messages() -> None:
    raw_request = f"{PACKAGE}.RawHttpRequest"
    raw_response = f"{PACKAGE}.RawHttpResponse"
    for name, method in _methods():
        if not _is_webhook(name):
            continue
        request_types = {
            f.message_type.full_name for f in method.input_type.fields if f.message_type
        }
        response_types = {
            f.message_type.full_name for f in method.output_type.fields if f.message_type
        }
        assert raw_request in request_types, name
        assert raw_response in response_types, name


def test_request_and_response_names_follow_the_rpc() -> None:
    for name, method in _methods():
        rpc = name.split(".")[1]
        assert method.input_type.name == f"{rpc}Request"
        assert method.output_type.name == f"{rpc}Response"


def test_enums_start_with_unspecified() -> None:
    for file in _files():
        enums = list(file.enum_types_by_name.values())
        for message in file.message_types_by_name.values():
            enums.extend(message.enum_types)
        for enum in enums:
            first = enum.values[0]
            assert first.number == 0 and first.name.endswith("_UNSPECIFIED"), enum.full_name


def test_list_rpcs_paginate() -> None:
    for name, method in _methods():
        rpc = name.split(".")[1]
        if not rpc.startswith("List") or rpc in {
            "ListPlatformCredentials",
            "ListCircuitBreakers",
        }:
            continue
        request, response = method.input_type, method.output_type
        assert {"page_size", "page_token"} <= set(request.fields_by_name), name
        assert "next_page_token" in response.fields_by_name, name


def test_update_rpcs_with_a_resource_body_take_a_field_mask() -> None:
    for name, method in _methods():
        rule = _http_rule(method)
        assert rule is not None
        verb, _ = _verb_and_path(rule)
        if verb == "PATCH" and rule.body not in ("", "*"):
            mask = method.input_type.fields_by_name.get("update_mask")
            assert mask is not None and mask.message_type is not None, name
            assert mask.message_type.full_name == "google.protobuf.FieldMask", name


_RPC_WITH_COMMENT = re.compile(r"((?:^[ \t]*//.*\n)*)^[ \t]*rpc (\w+)\(", re.MULTILINE)


def test_every_rpc_comment_names_its_errors() -> None:
    protos = sorted((ROOT / "protos" / "renove").rglob("*.proto"))
    found = {
        rpc: comment
        for path in protos
        for comment, rpc in _RPC_WITH_COMMENT.findall(path.read_text(encoding="utf-8"))
    }
    assert set(found) == {name.split(".")[1] for name, _ in _methods()}
    undocumented = [rpc for rpc, comment in found.items() if "Errors:" not in comment]
    assert not undocumented, f"RPC comments without an `Errors:` line: {undocumented}"


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module", _proto_modules())
def test_generated_modules_import(module: str) -> None:
    assert importlib.import_module(module).DESCRIPTOR.package == PACKAGE
    grpc_module = module + "_grpc"
    importlib.import_module(grpc_module)
