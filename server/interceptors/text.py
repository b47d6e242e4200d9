"""Request text PostgreSQL cannot store: a NUL character in any string field.

PostgreSQL's text types reject U+0000, so such a value would fail deep inside a query as an
internal error; no provider API accepts it either. Found by schemathesis (a NUL in
ListAuditLog's `acao` filter gave a 500). One check for every RPC, before any handler runs.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from server.errors import FieldViolation, InvalidArgument

_MAX_VIOLATIONS = 10


def reject_nul_characters(request: Message) -> None:
    """Raises InvalidArgument naming every string field (dotted path) that holds a NUL."""
    violations: list[FieldViolation] = []
    _walk(request, "", violations)
    if violations:
        raise InvalidArgument("text fields must not contain NUL characters", violations)


def _walk(message: Message, prefix: str, out: list[FieldViolation]) -> None:
    for field, value in message.ListFields():
        if len(out) >= _MAX_VIOLATIONS:
            return
        path = f"{prefix}{field.name}"
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    _check_text(f"{path}.{key}", key, out)
                    if isinstance(item, Message):
                        _walk(item, f"{path}.{key}.", out)
                    else:
                        _check_text(f"{path}.{key}", item, out)
            elif field.is_repeated:
                for index, item in enumerate(value):
                    _walk(item, f"{path}[{index}].", out)
            else:
                _walk(value, f"{path}.", out)
        elif field.type == FieldDescriptor.TYPE_STRING:
            items = value if field.is_repeated else [value]
            for item in items:
                _check_text(path, item, out)


def _check_text(path: str, value: object, out: list[FieldViolation]) -> None:
    if isinstance(value, str) and "\x00" in value:
        out.append(FieldViolation(path, "must not contain NUL characters"))
