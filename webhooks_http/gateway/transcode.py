"""HTTP request -> request message, and response message -> JSON.

Field names: requests accept both the proto name (`display_name`) and the json name
(`displayName`), in the body, the query string and FieldMask paths. Responses use the proto
names (`preserving_proto_field_name=True`), because the contract's fields are the spec's own
snake_case names, and print every field without presence (`always_print_fields_with_no_presence`)
so the frontend finds `""`, `0`, `false` and `[]` instead of a missing key. Enums are the
contract's wire strings (`"connected"`, see wire.py); requests may also send the proto value
name. Everything else is proto3 JSON: int64/uint64 as strings, Timestamp as RFC 3339, bytes as
base64. INPUT_ONLY fields never appear in responses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from google.api import field_behavior_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from .rules import HttpRule, field_behaviors, find_field, is_repeated, resolve_field_path
from .wire import InvalidEnumValue, WireCodec

_FIELD_MASK = "google.protobuf.FieldMask"
# Well-known message types whose JSON form is a single string: settable from a query parameter.
_STRING_WKT = frozenset({"google.protobuf.Timestamp", "google.protobuf.Duration", _FIELD_MASK})
_WRAPPERS = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
_FLOATS = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})
_BOOLS = {"true": True, "false": False, "1": True, "0": False}
_PARSED_FIELD = re.compile(r"Failed to parse (\w+) field")
_UNKNOWN_FIELD = re.compile(r'has no field named "([^"]+)"')


class TranscodeError(Exception):
    """The HTTP request cannot become a request message: answer 400, never call the server."""

    def __init__(self, message: str, violations: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.violations = list(violations) or [("", message)]


def build_request(
    rule: HttpRule,
    message_class: type[Message],
    path_params: Mapping[tuple[str, ...], str],
    query: Sequence[tuple[str, str]],
    body: bytes,
    codec: WireCodec | None = None,
) -> Message:
    """Assemble the request: body first, then the query string, then path variables (which win).

    Enum values may be wire strings or proto value names (`codec` turns the former into the
    latter; without one, only names and numbers are understood).

    Raises:
        TranscodeError: bad JSON, an unknown field, a value of the wrong type.
    """
    descriptor = cast(Descriptor, message_class.DESCRIPTOR)
    data: dict[str, Any] = {}
    if rule.body == "*":
        parsed = _parse_json(body)
        if parsed is not None and not isinstance(parsed, dict):
            raise TranscodeError("request body must be a JSON object", [("", "not an object")])
        data = parsed or {}
        if query:
            raise TranscodeError(
                "query parameters are not accepted: this method takes the whole request as body",
                [(key, "not accepted with a whole-request body") for key, _ in query],
            )
    elif rule.body:
        parsed = _parse_json(body)
        if parsed is not None:
            data[descriptor.fields_by_name[rule.body].name] = parsed
    _apply_query(data, descriptor, rule, path_params, query)
    _default_update_mask(data, descriptor, rule)  # before path variables: body fields only
    for field_path, value in path_params.items():
        field = resolve_field_path(descriptor, field_path)
        assert field is not None  # checked when the rule was collected
        _assign(data, descriptor, field_path, _scalar_from_text(field, value, ".".join(field_path)))
    _normalize_field_masks(data, descriptor)
    if codec is not None:
        try:
            codec.from_wire(data, descriptor)
        except InvalidEnumValue as exc:
            described = f"must be one of: {', '.join(exc.accepted)}"
            raise TranscodeError(f"invalid request: {exc}", [(exc.field, described)]) from exc
    message = message_class()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, OverflowError) as exc:
        raise TranscodeError(f"invalid request: {exc}", [(_field_of(str(exc)), str(exc))]) from exc
    return message


class ResponseEncoder:
    """Response message -> JSON-ready value (see the module docstring for the naming choice).

    INPUT_ONLY fields (secrets) are removed even when the server left them empty: printing
    every field would otherwise show `"secret": ""` and tell clients the field can be read.
    An unset message field (a Timestamp such as `ultima_mensagem_em`, a nested resource) is
    printed as `null`, so every field the contract declares is present; members of a oneof
    stay absent, as only the one set is meaningful. The work per message type is planned once
    and kept on the instance.
    """

    def __init__(self, codec: WireCodec | None = None) -> None:
        self._plans: dict[str, list[tuple[str, Descriptor | None, str]]] = {}
        self._codec = codec or WireCodec()

    def encode(self, message: Message, response_body: str = "") -> Any:
        data = json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        descriptor = cast(Descriptor, message.DESCRIPTOR)
        self._complete(data, descriptor)
        self._codec.to_wire(data, descriptor)
        if not response_body:
            return data
        field = message.DESCRIPTOR.fields_by_name[response_body]
        value = data.get(response_body)
        return {} if value is None and field.message_type is not None else value

    def _complete(self, data: Any, descriptor: Descriptor) -> None:
        if not isinstance(data, dict):
            return
        for name, nested, kind in self._plan(descriptor):
            if kind == "drop":
                data.pop(name, None)
                continue
            value = data.get(name)
            if kind == "nullable" and value is None:
                data[name] = None
                continue
            if nested is None:
                continue
            items: list[Any]
            if kind == "list":
                items = list(value or [])
            elif kind == "map":
                items = list((value or {}).values())
            else:
                items = [value]
            for item in items:
                self._complete(item, nested)

    def _plan(self, descriptor: Descriptor) -> list[tuple[str, Descriptor | None, str]]:
        """(field, type to look inside or None, "drop" | "nullable" | "one" | "list" | "map")."""
        plan = self._plans.get(descriptor.full_name)
        if plan is not None:
            return plan
        self._plans[descriptor.full_name] = plan = []  # placeholder: types may recurse
        for field in descriptor.fields:
            if field_behavior_pb2.INPUT_ONLY in field_behaviors(field):
                plan.append((field.name, None, "drop"))
                continue
            nested = field.message_type
            if nested is None:
                continue
            kind = "list" if is_repeated(field) else "one"
            if nested.GetOptions().map_entry:
                nested, kind = nested.fields_by_name["value"].message_type, "map"
                if nested is None:
                    continue
            elif kind == "one" and is_nullable(field):
                kind = "nullable"
            inside = nested if not nested.full_name.startswith("google.protobuf.") else None
            if inside is not None and not self._plan(inside):
                inside = None
            if inside is not None or kind == "nullable":
                plan.append((field.name, inside, kind))
        return plan


def is_nullable(field: FieldDescriptor) -> bool:
    """A singular message field outside a oneof: printed as `null` when unset."""
    if field.message_type is None or is_repeated(field):
        return False
    if field.message_type.GetOptions().map_entry:
        return False
    if field.message_type.full_name == "google.protobuf.Value":
        return False  # its null is a value of its own
    return field.containing_oneof is None or _is_synthetic_oneof(field)


def _is_synthetic_oneof(field: FieldDescriptor) -> bool:
    oneof = field.containing_oneof
    return oneof is not None and len(oneof.fields) == 1 and oneof.name == "_" + field.name


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        return None  # an empty body is an empty request, as in grpc-gateway
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise TranscodeError(f"request body is not valid JSON: {exc}") from exc


def _apply_query(
    data: dict[str, Any],
    descriptor: Descriptor,
    rule: HttpRule,
    path_params: Mapping[tuple[str, ...], str],
    query: Sequence[tuple[str, str]],
) -> None:
    bound_by_path = {_canonical(descriptor, p) for p in path_params}
    seen: set[tuple[str, ...]] = set()
    for key, raw in query:
        names = tuple(key.split("."))
        field = resolve_field_path(descriptor, names)
        if field is None:
            raise TranscodeError(f"unknown query parameter {key!r}", [(key, "no such field")])
        canonical = _canonical(descriptor, names)
        if canonical in bound_by_path or (rule.body and canonical[0] == rule.body):
            raise TranscodeError(
                f"query parameter {key!r} sets a field bound by the path or the body",
                [(key, "already bound by the path or body")],
            )
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            raise TranscodeError(
                f"map field {key!r} cannot be set from the query string",
                [(key, "map fields are not accepted in the query string")],
            )
        repeated = is_repeated(field)
        if canonical in seen and not repeated:
            raise TranscodeError(
                f"query parameter {key!r} given more than once", [(key, "not a repeated field")]
            )
        seen.add(canonical)
        _assign(data, descriptor, names, _scalar_from_text(field, raw, key), append=repeated)


def _scalar_from_text(field: FieldDescriptor, raw: str, where: str) -> Any:
    """A query/path string as the JSON value ParseDict expects for the field."""
    message = field.message_type
    if message is not None:
        if message.full_name in _STRING_WKT:
            return raw
        if message.full_name in _WRAPPERS:
            return _scalar_from_text(message.fields_by_name["value"], raw, where)
        raise TranscodeError(
            f"{where!r} is a message and cannot be set from text",
            [(where, "a message cannot be set from the path or query string")],
        )
    if field.type == FieldDescriptor.TYPE_BOOL:
        if raw.lower() not in _BOOLS:
            raise TranscodeError(f"{where!r} must be true or false", [(where, "not a boolean")])
        return _BOOLS[raw.lower()]
    if field.type == FieldDescriptor.TYPE_ENUM and raw.lstrip("-").isdigit():
        return int(raw)
    if field.type in _FLOATS and raw not in ("NaN", "Infinity", "-Infinity"):
        try:
            return float(raw)
        except ValueError as exc:
            raise TranscodeError(f"{where!r} must be a number", [(where, "not a number")]) from exc
    return raw  # integers stay strings: ParseDict accepts and range-checks them


def _canonical(descriptor: Descriptor, names: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    current: Descriptor | None = descriptor
    for name in names:
        field = find_field(current, name) if current is not None else None
        out.append(field.name if field is not None else name)
        current = field.message_type if field is not None else None
    return tuple(out)


def _assign(
    data: dict[str, Any],
    descriptor: Descriptor,
    names: Sequence[str],
    value: Any,
    *,
    append: bool = False,
) -> None:
    """Set `value` at a field path, keyed by proto names (a json-named key is renamed first)."""
    current: dict[str, Any] = data
    message: Descriptor | None = descriptor
    for index, name in enumerate(names):
        field = find_field(message, name) if message is not None else None
        if field is None:
            raise TranscodeError(f"unknown field {'.'.join(names)!r}", [(".".join(names), "")])
        if field.json_name != field.name and field.json_name in current:
            current[field.name] = current.pop(field.json_name)
        if index == len(names) - 1:
            if append:
                current.setdefault(field.name, []).append(value)
            else:
                current[field.name] = value
            return
        child = current.setdefault(field.name, {})
        if not isinstance(child, dict):
            raise TranscodeError(f"{'.'.join(names)!r}: {field.name} is not an object")
        current, message = child, field.message_type


def _default_update_mask(data: dict[str, Any], descriptor: Descriptor, rule: HttpRule) -> None:
    """PATCH without `update_mask` updates the fields present in the body (grpc-gateway's rule)."""
    mask = descriptor.fields_by_name.get("update_mask")
    if rule.method != "PATCH" or rule.body in ("", "*") or mask is None:
        return
    if mask.message_type is None or mask.message_type.full_name != _FIELD_MASK:
        return
    resource = data.get(rule.body)
    body_type = descriptor.fields_by_name[rule.body].message_type
    if "update_mask" in data or "updateMask" in data or not isinstance(resource, dict):
        return
    if body_type is None:
        return
    paths = [_field_name_or_key(body_type, key) for key in resource]
    data["update_mask"] = {"paths": paths}


def _field_name_or_key(message: Descriptor, key: str) -> str:
    field = find_field(message, key)
    return field.name if field is not None else key


def _normalize_field_masks(data: Any, descriptor: Descriptor) -> None:
    """Rewrite FieldMask values into the camelCase string ParseDict wants.

    protobuf's JSON parser rejects snake_case mask paths ("must not contain '_'"), but our
    clients speak the contract's snake_case names; both spellings and the `{"paths": [...]}`
    object form are accepted here.
    """
    if not isinstance(data, dict):
        return
    for key, value in list(data.items()):
        field = find_field(descriptor, key)
        if field is None or field.message_type is None:
            continue
        message = field.message_type
        if message.full_name == _FIELD_MASK:
            data[key] = _mask_json(value)
        elif message.GetOptions().map_entry:
            value_field = message.fields_by_name["value"]
            if value_field.message_type is not None and isinstance(value, dict):
                for item in value.values():
                    _normalize_field_masks(item, value_field.message_type)
        elif isinstance(value, list):
            for item in value:
                _normalize_field_masks(item, message)
        elif not message.full_name.startswith("google.protobuf."):
            _normalize_field_masks(value, message)


def _mask_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"paths"} and isinstance(value["paths"], list):
        paths = [str(p) for p in value["paths"]]
    elif isinstance(value, str):
        paths = [p.strip() for p in value.split(",") if p.strip()]
    else:
        return value  # let ParseDict report the type error
    return ",".join(".".join(_camel(_snake(s)) for s in p.split(".")) for p in paths)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _field_of(error: str) -> str:
    """The dotted field a json_format error is about ("" when it does not say)."""
    names = _PARSED_FIELD.findall(error)
    unknown = _UNKNOWN_FIELD.search(error)
    if unknown:
        names.append(unknown.group(1))
    return ".".join(names)
