"""Directory requests -> plain values, with every problem reported as a field violation."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from google.protobuf import timestamp_pb2
from renove.conexoes.v1 import crm_directory_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2

from server.crm_directory.contacts import ContactValues
from server.crm_directory.fields import FieldValues
from server.crm_directory.pipelines import PipelineValues, StageValues
from server.crm_directory.users import UserValues
from server.errors import FieldViolation, InvalidArgument

MAX_BATCH = 500
# A naive datetime: `problems_of` reports it as a missing updated_at.
_MISSING = dt.datetime(1970, 1, 1)

_ROLES = {
    resources_pb2.USER_ROLE_UNSPECIFIED: "member",
    resources_pb2.USER_ROLE_MEMBER: "member",
    resources_pb2.USER_ROLE_ADMIN: "admin",
    resources_pb2.USER_ROLE_SUPER_ADMIN: "super_admin",
}
_FIELD_TYPES = {
    value: name.removeprefix("CUSTOM_FIELD_TYPE_").lower()
    for name, value in pb.CustomFieldType.items()
    if value != pb.CUSTOM_FIELD_TYPE_UNSPECIFIED
}
T = TypeVar("T")
M = TypeVar("M")


def when(ts: timestamp_pb2.Timestamp, present: bool) -> dt.datetime:
    return ts.ToDatetime(tzinfo=dt.UTC) if present else _MISSING


def uuid_of(value: str, name: str, problems: list[FieldViolation]) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        problems.append(FieldViolation(name, "must be a UUID"))
        return uuid.UUID(int=0)


def user(m: pb.CrmUser, prefix: str, problems: list[FieldViolation]) -> UserValues:
    return UserValues(
        id=uuid_of(m.id, f"{prefix}id", problems),
        updated_at=when(m.updated_at, m.HasField("updated_at")),
        nome=m.nome,
        email=m.email.strip() or None,
        role=_ROLES.get(m.role, "?"),
        ativo=m.ativo if m.HasField("ativo") else True,
        participa_distribuicao=m.participa_distribuicao,
    )


def pipeline(m: pb.CrmPipeline, prefix: str, problems: list[FieldViolation]) -> PipelineValues:
    return PipelineValues(
        id=uuid_of(m.id, f"{prefix}id", problems),
        updated_at=when(m.updated_at, m.HasField("updated_at")),
        nome=m.nome,
        ordem=m.ordem,
        etapas=tuple(
            StageValues(uuid_of(s.id, f"{prefix}etapas[{i}].id", problems), s.nome)
            for i, s in enumerate(m.etapas)
        ),
    )


def custom_field(m: pb.CrmCustomField, prefix: str, problems: list[FieldViolation]) -> FieldValues:
    return FieldValues(
        id=m.id.strip(),
        updated_at=when(m.updated_at, m.HasField("updated_at")),
        rotulo=m.rotulo,
        tipo=_FIELD_TYPES.get(m.tipo, ""),
    )


def contact(m: pb.CrmContact, prefix: str, problems: list[FieldViolation]) -> ContactValues:
    owner = m.owner_id.strip()
    return ContactValues(
        id=uuid_of(m.id, f"{prefix}id", problems),
        updated_at=when(m.updated_at, m.HasField("updated_at")),
        nome=m.nome,
        owner_id=uuid_of(owner, f"{prefix}owner_id", problems) if owner else None,
        emails=tuple(m.emails),
        telefones=tuple(m.telefones),
        cidade=m.cidade,
        estado=m.estado,
        cep=m.cep,
        pais=m.pais,
        consentimento=m.consentimento if m.HasField("consentimento") else None,
    )


def prefix_of(name: str, index: int, single: bool) -> str:
    """Where an item's fields are reported: `contact.` for a single write, `contacts[3].`."""
    return f"{name}." if single else f"{name}[{index}]."


def batch(
    items: Sequence[M],
    name: str,
    parse: Callable[[M, str, list[FieldViolation]], T],
    check: Callable[[T, str], list[FieldViolation]],
    key: Callable[[T], object],
    *,
    single: bool = False,
) -> list[T]:
    """Parses and checks every item; raises all problems at once (see `prefix_of`)."""
    problems: list[FieldViolation] = []
    if not items:
        problems.append(FieldViolation(name, "at least one"))
    if len(items) > MAX_BATCH:
        problems.append(FieldViolation(name, f"at most {MAX_BATCH}"))
    values: list[T] = []
    seen: set[object] = set()
    for i, item in enumerate(items):
        prefix = prefix_of(name, i, single)
        value = parse(item, prefix, problems)
        problems.extend(check(value, prefix))
        if key(value) in seen:
            problems.append(FieldViolation(f"{prefix}id", "listed twice"))
        seen.add(key(value))
        values.append(value)
    if problems:
        raise InvalidArgument("invalid directory write", problems)
    return values


def require_stamp(updated_at: dt.datetime) -> None:
    """A delete's `updated_at` must be given (its id is checked by its parser)."""
    if updated_at.tzinfo is None:
        raise InvalidArgument.field("updated_at", "required (a timestamp)")
