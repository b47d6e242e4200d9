"""Enum values as the contract's wire strings: `"status": "connected"`, not the proto name.

Each enum value of the contract declares its JSON string with the `(renove.conexoes.v1.wire)`
option (protos/renove/conexoes/v1/options.proto). `WireCodec` rewrites the proto3 JSON that
`json_format` produces (value names) into those strings, and the other way for requests,
which may send either the wire string or the proto value name (or its number, as proto3 JSON
allows). An enum value without the option keeps its proto name (well-known and third-party
enums; a contract test makes sure none of ours lacks it).

`google.protobuf.Struct` fields (event payloads) and `ErrorInfo` metadata hold JSON the
server built from contract messages, so the gateway cannot know their types: there, any string
equal to a contract enum value name (unique across the package, buf's ENUM_VALUE_PREFIX rule)
becomes its wire string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    EnumValueDescriptor,
    FieldDescriptor,
    FileDescriptor,
)
from renove.conexoes.v1 import options_pb2

from .rules import find_field, is_repeated

_ERROR_INFO = "google.rpc.ErrorInfo"
_STRUCT_TYPES = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
)


class InvalidEnumValue(ValueError):
    """A request named an enum value that does not exist (wire string or proto name)."""

    def __init__(self, field: str, value: object, accepted: Sequence[str]) -> None:
        super().__init__(f"{field}: {value!r} is not one of {', '.join(accepted)}")
        self.field = field
        self.accepted = list(accepted)


def wire_string(value: EnumValueDescriptor) -> str | None:
    """The value's `(wire)` option, or None when it has none."""
    # Re-parsed against the default pool (as for google.api.http in rules.py): descriptors
    # from another pool carry the extension as unknown fields otherwise.
    raw = value.GetOptions().SerializeToString()
    options = descriptor_pb2.EnumValueOptions.FromString(raw)
    if not options.HasExtension(options_pb2.wire):
        return None
    return str(options.Extensions[options_pb2.wire])


@dataclass(frozen=True, slots=True)
class EnumWire:
    """One enum's JSON spelling."""

    to_wire: Mapping[str, str]  # proto value name -> wire string
    to_name: Mapping[str, str]  # wire string or proto value name -> proto value name
    values: tuple[str, ...]  # wire strings, in declaration order

    @classmethod
    def of(cls, enum: EnumDescriptor) -> EnumWire:
        to_wire = {value.name: wire_string(value) or value.name for value in enum.values}
        to_name = {name: name for name in to_wire}
        to_name.update({wire: name for name, wire in to_wire.items()})
        return cls(to_wire, to_name, tuple(to_wire.values()))


@dataclass(frozen=True, slots=True)
class _Step:
    field: FieldDescriptor
    shape: str  # "one", "list" or "map"
    enum: EnumWire | None = None
    message: Descriptor | None = None
    struct: bool = False


class WireCodec:
    """Rewrites enum values between proto3 JSON names and wire strings, per message type.

    What to visit is worked out once per message type and kept on the instance.
    """

    def __init__(self, files: Iterable[FileDescriptor] = ()) -> None:
        self._enums: dict[str, EnumWire] = {}
        self._plans: dict[str, list[_Step]] = {}
        self._names: dict[str, str] = {}  # every contract enum value name -> wire string
        for enum in _enums_of(files):
            for name, wire in self.enum(enum).to_wire.items():
                if wire != name:
                    self._names[name] = wire

    def enum(self, enum: EnumDescriptor) -> EnumWire:
        found = self._enums.get(enum.full_name)
        if found is None:
            found = self._enums[enum.full_name] = EnumWire.of(enum)
        return found

    def to_wire(self, data: Any, message: Descriptor) -> Any:
        """Response JSON (proto field names, enum value names) -> wire strings, in place."""
        if isinstance(data, dict):
            for step in self._plan(message):
                name = step.field.name
                if name in data:
                    data[name] = self._out(step, data[name])
        return data

    def names_to_wire(self, data: Any) -> Any:
        """Free-form JSON: strings equal to a contract enum value name -> wire strings."""
        if isinstance(data, str):
            return self._names.get(data, data)
        if isinstance(data, list):
            return [self.names_to_wire(item) for item in data]
        if isinstance(data, dict):
            return {key: self.names_to_wire(value) for key, value in data.items()}
        return data

    def error_json(self, status: dict[str, Any]) -> dict[str, Any]:
        """A Status as JSON with its ErrorInfo metadata values written as wire strings."""
        for detail in status.get("details", []):
            if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(_ERROR_INFO):
                metadata = detail.get("metadata")
                if isinstance(metadata, dict):
                    detail["metadata"] = self.names_to_wire(metadata)
        return status

    def from_wire(self, data: Any, message: Descriptor, where: str = "") -> None:
        """Request JSON (proto or json field names) -> enum value names, in place.

        Raises:
            InvalidEnumValue: a string that is neither a wire string nor a value name.
        """
        if not isinstance(data, dict):
            return  # ParseDict reports the type error
        for key, value in list(data.items()):
            field = find_field(message, key)
            if field is None:
                continue  # ParseDict reports unknown fields
            path = f"{where}.{field.name}" if where else field.name
            enum, nested = field.enum_type, field.message_type
            if nested is not None and nested.GetOptions().map_entry:
                value_field = nested.fields_by_name["value"]
                if isinstance(value, dict):
                    for item_key, item in value.items():
                        value[item_key] = self._in_item(value_field, item, f"{path}.{item_key}")
            elif is_repeated(field) and isinstance(value, list):
                data[key] = [self._in_item(field, item, path) for item in value]
            elif enum is not None or nested is not None:
                data[key] = self._in_item(field, value, path)

    def _in_item(self, field: FieldDescriptor, value: Any, path: str) -> Any:
        if field.enum_type is not None:
            if not isinstance(value, str):
                return value  # a number, or a type error for ParseDict
            wire = self.enum(field.enum_type)
            name = wire.to_name.get(value)
            if name is None:
                raise InvalidEnumValue(path, value, wire.values)
            return name
        nested = field.message_type
        if nested is not None and not nested.full_name.startswith("google.protobuf."):
            self.from_wire(value, nested, path)
        return value

    def _out(self, step: _Step, value: Any) -> Any:
        if step.shape == "list" and isinstance(value, list):
            return [self._out_item(step, item) for item in value]
        if step.shape == "map" and isinstance(value, dict):
            return {key: self._out_item(step, item) for key, item in value.items()}
        return self._out_item(step, value)

    def _out_item(self, step: _Step, value: Any) -> Any:
        if step.enum is not None:
            return step.enum.to_wire.get(value, value) if isinstance(value, str) else value
        if step.struct:
            return self.names_to_wire(value)
        assert step.message is not None
        return self.to_wire(value, step.message)

    def _plan(self, message: Descriptor) -> list[_Step]:
        plan = self._plans.get(message.full_name)
        if plan is not None:
            return plan
        self._plans[message.full_name] = plan = []  # placeholder: types may recurse
        for field in message.fields:
            shape = "list" if is_repeated(field) else "one"
            target = field
            nested = field.message_type
            if nested is not None and nested.GetOptions().map_entry:
                shape, target = "map", nested.fields_by_name["value"]
                nested = target.message_type
            if target.enum_type is not None:
                plan.append(_Step(field, shape, enum=self.enum(target.enum_type)))
            elif nested is not None and nested.full_name in _STRUCT_TYPES:
                plan.append(_Step(field, shape, struct=True))
            elif (
                nested is not None
                and not nested.full_name.startswith("google.protobuf.")
                and (self._plan(nested) or nested.full_name == message.full_name)
            ):
                plan.append(_Step(field, shape, message=nested))
        return plan


def _enums_of(files: Iterable[FileDescriptor]) -> list[EnumDescriptor]:
    """Every enum of the files and the files they import (top-level and nested)."""
    seen: set[str] = set()
    enums: list[EnumDescriptor] = []

    def visit_message(message: Descriptor) -> None:
        enums.extend(message.enum_types)
        for nested in message.nested_types:
            visit_message(nested)

    def visit(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        enums.extend(file.enum_types_by_name.values())
        for message in file.message_types_by_name.values():
            visit_message(message)
        for dependency in file.dependencies:
            visit(dependency)

    for file in files:
        visit(file)
    return enums
