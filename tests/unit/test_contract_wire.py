"""The contract's JSON spelling: a wire string on every enum value, success statuses, redirects.

A new enum or value added anywhere in protos/renove/conexoes/v1 without its
`[(renove.conexoes.v1.wire) = "..."]` fails here, before the frontend ever sees a proto name.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, MethodDescriptor
from renove.conexoes.v1 import options_pb2

from cli.render import enum_label
from webhooks_http.gateway import collect_rules, success_status, wire_string
from webhooks_http.oauth import CALLBACKS

PACKAGE = "renove.conexoes.v1"
_LOWER_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")

# Where the spec writes a value in its own words rather than the lower_snake rule:
# conexoes_instagram.account_type is 'BUSINESS' or 'CREATOR' (Instagram's own values).
SPEC_EXCEPTIONS = {
    "INSTAGRAM_ACCOUNT_TYPE_BUSINESS": "BUSINESS",
    "INSTAGRAM_ACCOUNT_TYPE_CREATOR": "CREATOR",
}

# The spec's words for the values it names (data model columns and endpoint examples).
SPEC_WORDS: dict[str, set[str]] = {
    "WahaSessionStatus": {"disconnected", "qr_pending", "connecting", "connected", "failed"},
    "ConnectionStatus": {"active", "expired", "revoked", "error", "disconnected", "pending"},
    "CapiLogStatus": {"sent", "failed", "pending"},
    "QueuedEventStatus": {"pending", "processing", "failed", "completed"},
    "EmailConnectionKind": {"gmail_oauth", "smtp_manual"},
    "AudienceSyncType": {"evento", "manual"},
    "AudienceTrigger": {"lead", "mql", "schedule", "won", "lost"},
    "InstagramTokenType": {"short_lived", "long_lived"},
    "InstagramAccountType": {"BUSINESS", "CREATOR"},
    "InstagramAttachmentType": {"image"},
    "MessageDirection": {"inbound", "outbound"},
    "UserRole": {"super_admin", "admin", "member"},
}

# RPCs the spec (or the REST rule for a POST that creates a resource) answers with 201.
CREATED = {
    "WhatsAppService.StartWhatsAppSession",  # spec 1.5: Response (201)
    "EmailService.SaveSmtpConfig",  # spec 6.6: Response (201)
    "MetaLeadsService.CreateLeadFormMapping",
    "AudiencesService.CreateAudience",
    "GoogleCalendarService.CreateGoogleCalendarEvent",
}


def _files() -> list[object]:
    package = importlib.import_module(PACKAGE)
    return [
        importlib.import_module(f"{PACKAGE}.{info.name}").DESCRIPTOR
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.endswith("_pb2")
    ]


def _enums() -> Iterator[EnumDescriptor]:
    def nested(message: Descriptor) -> Iterator[EnumDescriptor]:
        yield from message.enum_types
        for inner in message.nested_types:
            yield from nested(inner)

    for file in _files():
        yield from file.enum_types_by_name.values()  # type: ignore[attr-defined]
        for message in file.message_types_by_name.values():  # type: ignore[attr-defined]
            yield from nested(message)


def _methods() -> Iterator[tuple[str, MethodDescriptor]]:
    for file in _files():
        for service in file.services_by_name.values():  # type: ignore[attr-defined]
            for method in service.methods:
                yield f"{service.name}.{method.name}", method


def _prefix(enum: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", enum.name).upper() + "_"


def test_the_package_has_enums_to_check() -> None:
    assert len(list(_enums())) >= 30


def test_every_enum_value_has_a_wire_string() -> None:
    missing = [
        f"{enum.full_name}.{value.name}"
        for enum in _enums()
        for value in enum.values
        if not wire_string(value)
    ]
    assert not missing, f"enum values without [(renove.conexoes.v1.wire) = ...]: {missing}"


def test_wire_strings_follow_the_rule_unless_the_spec_words_them() -> None:
    for enum in _enums():
        wires = [wire_string(value) for value in enum.values]
        assert len(set(wires)) == len(wires), f"{enum.full_name}: duplicate wire strings"
        for value, wire in zip(enum.values, wires, strict=True):
            expected = SPEC_EXCEPTIONS.get(value.name)
            if expected is None:
                expected = value.name.removeprefix(_prefix(enum)).lower()
                assert _LOWER_SNAKE.match(expected), value.name
            assert wire == expected, f"{value.name}: {wire!r}, expected {expected!r}"


def test_the_spec_words_are_the_wire_strings() -> None:
    enums = {enum.name: enum for enum in _enums()}
    for name, words in SPEC_WORDS.items():
        wires = {wire_string(value) for value in enums[name].values}
        assert words <= wires, f"{name}: {sorted(words - wires)} missing"


def test_created_resources_answer_201() -> None:
    statuses = {name: success_status(method) for name, method in _methods()}
    assert {name for name, status in statuses.items() if status == 201} == CREATED
    assert set(statuses.values()) <= {200, 201, 302}


def test_oauth_callbacks_are_redirects_served_by_the_sidecar() -> None:
    redirects = {name: method for name, method in _methods() if 300 <= success_status(method) < 400}
    assert {name.split(".")[1] for name in redirects} == {cb.rpc for cb in CALLBACKS}
    assert all(name.endswith("OAuthCallback") for name in redirects)
    # The sidecar's route for each is at the path the contract documents.
    paths = {
        rule.method_descriptor.name: rule.path_template
        for rule in collect_rules(_files())  # type: ignore[arg-type]
        if rule.is_redirect
    }
    assert paths == {cb.rpc: cb.path for cb in CALLBACKS}
    assert options_pb2.success_status.number == 51202  # part of the contract: never renumber


def test_the_cli_prints_the_words_it_printed_before() -> None:
    """`conexoes` labels come from the wire strings now; its words must not have moved."""
    for enum in _enums():
        field = next(iter(_holders(enum)), None)
        if field is None:
            continue
        message_class, field_name = field
        for value in enum.values:
            if value.name in SPEC_EXCEPTIONS:
                continue
            message = message_class(**{field_name: value.number})
            before = value.name.removeprefix(_prefix(enum)).lower()
            assert enum_label(message, field_name) == before, value.name


def _holders(enum: EnumDescriptor) -> Iterator[tuple[Any, str]]:
    """(message class, field name) of singular fields of this enum type, in the contract."""
    for file in _files():
        for message in file.message_types_by_name.values():  # type: ignore[attr-defined]
            for field in message.fields:
                if field.enum_type is enum and not field.is_repeated:
                    yield message_factory.GetMessageClass(message), field.name
