"""Small renderers shared by the commands: enum labels, times, JSON, QR codes."""

from __future__ import annotations

import io
import json
from typing import Any

import segno
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from renove.conexoes.v1 import options_pb2


def enum_label(message: Message, field: str) -> str:
    """`WAHA_SESSION_STATUS_QR_PENDING` -> `qr_pending`: the word the HTTP API uses too.

    That is the value's `(renove.conexoes.v1.wire)` string; a value without one (an enum from
    outside the contract) is its name without the enum's prefix, in lower case.
    """
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = getattr(message, field)
    known = descriptor.values_by_number.get(value)
    if known is None:
        return str(value)
    wire = known.GetOptions().Extensions[options_pb2.wire]
    return str(wire) if wire else _strip_enum_prefix(descriptor.name, known.name)


def _strip_enum_prefix(enum_name: str, value_name: str) -> str:
    # Enum values are prefixed with the enum's name in UPPER_SNAKE (buf's ENUM_VALUE_PREFIX).
    prefix = "".join(f"_{c}" if c.isupper() else c.upper() for c in enum_name).lstrip("_") + "_"
    label = value_name.removeprefix(prefix)
    return label.lower()


def when(stamp: Timestamp) -> str:
    """A Timestamp as local-free ISO text, or `-` when unset."""
    if not stamp.seconds and not stamp.nanos:
        return "-"
    return stamp.ToDatetime().replace(microsecond=0).isoformat() + "Z"


def as_json(message: Message) -> dict[str, Any]:
    """Proto3 JSON with the contract's snake_case names (as the HTTP gateway prints them)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def qr_text(value: str) -> str:
    """The QR code of `value` drawn with terminal characters (half blocks: two rows per line)."""
    buffer = io.StringIO()
    segno.make(value, error="l").terminal(out=buffer, compact=True)
    return buffer.getvalue()
