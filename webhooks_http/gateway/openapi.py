"""OpenAPI 3.1 document for the gateway, derived from the same rules and descriptors.

Schemas describe the JSON the gateway actually speaks (see transcode.py): proto field names,
int64 as strings, enums as their wire strings (wire.py), an unset message field as `null`,
well-known types in their proto3 JSON form. Each message becomes one component schema named
by its full proto name; errors are `google.rpc.Status`. Success answers with the method's
`success_status` (201 for creations); browser redirects (the OAuth callbacks, a 3xx
`success_status`) are documented as the redirects the sidecar answers, without a JSON body
and without the bearer token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from .rules import HttpRule, field_behaviors, is_repeated, resolve_field_path
from .sse import EVENT_STREAM, NDJSON
from .transcode import is_nullable
from .wire import WireCodec

OPENAPI_VERSION = "3.1.0"
_STATUS = "google.rpc.Status"
_MAX_QUERY_DEPTH = 3
_T = FieldDescriptor
_INT32 = {"type": "integer", "format": "int32"}
_UINT32 = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295}
_INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$"}
_UINT64 = {"type": "string", "format": "uint64", "pattern": "^[0-9]{1,19}$"}
_FLOAT = {
    "anyOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]
}
_SCALARS: dict[int, dict[str, Any]] = {
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "format": "byte"},
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_INT32: _INT32,
    _T.TYPE_SINT32: _INT32,
    _T.TYPE_SFIXED32: _INT32,
    _T.TYPE_UINT32: _UINT32,
    _T.TYPE_FIXED32: _UINT32,
    _T.TYPE_INT64: _INT64,
    _T.TYPE_SINT64: _INT64,
    _T.TYPE_SFIXED64: _INT64,
    _T.TYPE_UINT64: _UINT64,
    _T.TYPE_FIXED64: _UINT64,
    _T.TYPE_DOUBLE: _FLOAT,
    _T.TYPE_FLOAT: _FLOAT,
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "comma-separated field paths"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
}
_WRAPPERS = {
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}
_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "google.rpc.Status; details carry ErrorInfo, BadRequest, RetryInfo ...",
    "properties": {
        "code": {"type": "integer", "format": "int32"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": _WELL_KNOWN["google.protobuf.Any"]},
    },
    "required": ["code", "message"],
}


def build_openapi(
    rules: Sequence[HttpRule], *, title: str, version: str, codec: WireCodec | None = None
) -> dict[str, Any]:
    """The OpenAPI document: one operation per rule, operationId = RPC name."""
    components = _Components(codec or WireCodec())
    paths: dict[str, dict[str, Any]] = {}
    used_ids: dict[str, str] = {}
    for rule in rules:
        operation_id = _operation_id(rule, used_ids)
        if rule.is_redirect:
            operation = _redirect_operation(rule, components, operation_id)
        else:
            operation = _operation(rule, components, operation_id)
        paths.setdefault(rule.template.openapi_path, {})[rule.method.lower()] = operation
    schemas = dict(sorted(components.schemas.items()))
    schemas[_STATUS] = _STATUS_SCHEMA
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearerAuth": []}],
    }


def _operation_id(rule: HttpRule, used: dict[str, str]) -> str:
    """The RPC name; `Name_1`, `Name_2` for additional bindings; `Service_Name` on a clash."""
    rpc = rule.method_descriptor
    name = rpc.name
    if used.get(name, rpc.full_name) != rpc.full_name:
        name = f"{rule.service.rsplit('.', 1)[-1]}_{name}"
    base, counter = name, 1
    while name in used:
        name, counter = f"{base}_{counter}", counter + 1
    used[name] = rpc.full_name
    return name


def _operation(rule: HttpRule, components: _Components, operation_id: str) -> dict[str, Any]:
    method = rule.method_descriptor
    request = method.input_type
    parameters = _parameters(rule, components)
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": f"{rule.service}.{method.name}",
        "tags": [rule.service.rsplit(".", 1)[-1]],
        "parameters": parameters,
        "responses": {
            str(rule.success_status): _success(rule, components),
            "default": {
                "description": "Error: a google.rpc.Status",
                "content": {"application/json": {"schema": _ref(_STATUS)}},
            },
        },
    }
    if rule.body:
        schema = (
            components.message_ref(request)
            if rule.body == "*"
            else components.field_schema(request.fields_by_name[rule.body])
        )
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": schema}},
        }
    if method.GetOptions().deprecated:
        operation["deprecated"] = True
    return operation


def _redirect_operation(
    rule: HttpRule, components: _Components, operation_id: str
) -> dict[str, Any]:
    """A browser redirect: where it lands is the whole answer, on success and on failure."""
    method = rule.method_descriptor
    location = {
        "description": "The frontend page to land on, with the outcome in its query "
        "(`conexao`, `status=ok|erro`, `motivo`)",
        "required": True,
        "schema": {"type": "string"},
    }
    return {
        "operationId": operation_id,
        "summary": f"{rule.service}.{method.name}",
        "description": "Browser redirect from the provider's consent screen: the sidecar "
        "exchanges the code and sends the browser on to the frontend. Never JSON.",
        "tags": [rule.service.rsplit(".", 1)[-1]],
        "security": [],
        "parameters": _parameters(rule, components),
        "responses": {
            str(rule.success_status): {
                "description": "Redirect to the frontend, whatever the outcome",
                "headers": {"Location": location},
            },
            "429": {
                "description": "Too many callbacks from this address; retry later",
                "headers": {"Retry-After": {"schema": {"type": "string"}}},
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        },
    }


def _parameters(rule: HttpRule, components: _Components) -> list[dict[str, Any]]:
    request = rule.method_descriptor.input_type
    bound = {var.field_path for var in rule.template.variables}
    parameters: list[dict[str, Any]] = []
    for var in rule.template.variables:
        field = resolve_field_path(request, var.field_path)
        assert field is not None  # checked when the rule was collected
        schema = {**components.field_schema(field), "minLength": 1}
        parameters.append(
            {
                "name": rule.template.parameter_names[var.field_path],
                "in": "path",
                "required": True,
                "description": f"request field `{'.'.join(var.field_path)}` "
                f"(template `{rule.path_template}`)",
                "schema": schema,
            }
        )
    if rule.body != "*":
        skip = rule.body
        for name, field in _query_fields(request, (), bound, skip, 0):
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": components.field_schema(field),
                }
            )
    return parameters


def _success(rule: HttpRule, components: _Components) -> dict[str, Any]:
    output = rule.method_descriptor.output_type
    schema = (
        components.field_schema(output.fields_by_name[rule.response_body])
        if rule.response_body
        else components.message_ref(output)
    )
    if rule.server_streaming:
        return {
            "description": "A stream: one SSE event per message (`data: <message>`), a final "
            "`event: error` with a google.rpc.Status if it fails; or, with "
            '`Accept: application/x-ndjson`, lines `{"result": <message>}` / '
            '`{"error": <status>}`',
            "content": {
                EVENT_STREAM: {"schema": _sse_event(schema)},
                NDJSON: {"schema": {"type": "string"}},
            },
        }
    description = "Created" if rule.success_status == 201 else "OK"
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _sse_event(message: dict[str, Any]) -> dict[str, Any]:
    """One SSE event: a message, or the error that ended the stream."""

    def event(name: str, payload: dict[str, Any], required: list[str]) -> dict[str, Any]:
        data = {"type": "string", "contentMediaType": "application/json", "contentSchema": payload}
        return {
            "type": "object",
            "properties": {"event": {"const": name}, "data": data},
            "required": required,
        }

    return {
        "anyOf": [
            event("message", message, ["data"]),
            event("error", _ref(_STATUS), ["event", "data"]),
        ]
    }


def _query_fields(
    message: Descriptor, prefix: tuple[str, ...], bound: set[tuple[str, ...]], skip: str, depth: int
) -> list[tuple[str, FieldDescriptor]]:
    """Fields a client may set from the query string: scalars, repeated scalars, nested paths."""
    out: list[tuple[str, FieldDescriptor]] = []
    for field in message.fields:
        path = (*prefix, field.name)
        if path in bound or (not prefix and field.name == skip):
            continue
        nested = field.message_type
        if nested is None or nested.full_name in _WELL_KNOWN or nested.full_name in _WRAPPERS:
            if nested is None or nested.full_name not in (
                "google.protobuf.Struct",
                "google.protobuf.Value",
                "google.protobuf.ListValue",
                "google.protobuf.Any",
                "google.protobuf.Empty",
            ):
                out.append((".".join(path), field))
        elif (
            not nested.GetOptions().map_entry
            and not is_repeated(field)
            and depth < _MAX_QUERY_DEPTH
        ):
            out.extend(_query_fields(nested, path, bound, skip, depth + 1))
    return out


class _Components:
    def __init__(self, codec: WireCodec) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}
        self._codec = codec

    def message_ref(self, message: Descriptor) -> dict[str, Any]:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if message.full_name in _WRAPPERS:
            return {"anyOf": [_SCALARS[message.fields_by_name["value"].type], {"type": "null"}]}
        if message.full_name not in self.schemas:
            self.schemas[message.full_name] = {}  # placeholder first: messages may recurse
            self.schemas[message.full_name] = self._message_schema(message)
        return _ref(message.full_name)

    def field_schema(self, field: FieldDescriptor) -> dict[str, Any]:
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            return {
                "type": "object",
                "additionalProperties": self.field_schema(nested.fields_by_name["value"]),
            }
        if nested is not None:
            single = self.message_ref(nested)
        elif field.enum_type is not None:
            single = {"type": "string", "enum": list(self._codec.enum(field.enum_type).values)}
        else:
            single = dict(_SCALARS[field.type])
        if is_repeated(field):
            return {"type": "array", "items": single}
        return single

    def _message_schema(self, message: Descriptor) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for field in message.fields:
            property_schema = self.field_schema(field)
            nested = field.message_type
            if is_nullable(field) and nested is not None and nested.full_name not in _WRAPPERS:
                property_schema = {"anyOf": [property_schema, {"type": "null"}]}
            behaviors = field_behaviors(field)
            extra: dict[str, Any] = {}
            if field_behavior_pb2.OUTPUT_ONLY in behaviors:
                extra["readOnly"] = True
            if field_behavior_pb2.INPUT_ONLY in behaviors:
                extra["writeOnly"] = True
            oneof = field.containing_oneof
            if oneof is not None and not _is_synthetic(oneof):
                extra["description"] = f"one of `{oneof.name}`: set at most one"
            properties[field.name] = {**property_schema, **extra}
        schema: dict[str, Any] = {
            "type": "object",
            "title": message.full_name,
            "properties": properties,
            "additionalProperties": False,
        }
        # "Set at most one" of each real oneof: no two of its members together.
        pairs = [
            {"required": [a.name, b.name]}
            for oneof in message.oneofs
            if not _is_synthetic(oneof)
            for index, a in enumerate(oneof.fields)
            for b in list(oneof.fields)[index + 1 :]
        ]
        if pairs:
            schema["not"] = {"anyOf": pairs}
        return schema


def _is_synthetic(oneof: Any) -> bool:
    # proto3 `optional` fields live in a synthetic oneof of their own: not a real choice.
    fields = list(oneof.fields)
    return len(fields) == 1 and oneof.name == "_" + fields[0].name


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}
