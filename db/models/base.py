"""Declarative base, type map and the column helpers every table shares."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    DateTime,
    ForeignKey,
    LargeBinary,
    MetaData,
    Numeric,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names follow PostgreSQL's own defaults, so the spec's unnamed constraints
# (UNIQUE(organizacao_id, usuario_id)) get the names PostgreSQL would have given them.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}

Json = dict[str, Any]

NOW = text("now()")
GEN_UUID = text("gen_random_uuid()")
EMPTY_JSON = text("'{}'::jsonb")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        uuid.UUID: Uuid(as_uuid=True),
        dt.datetime: DateTime(timezone=True),
        Json: JSONB(),
        list[str]: ARRAY(Text()),
        bytes: LargeBinary(),
        Decimal: Numeric(14, 2),
        str: Text(),
    }


def uuid_pk() -> Mapped[uuid.UUID]:
    """`id uuid PRIMARY KEY DEFAULT gen_random_uuid()`.

    The ORM also makes the id client-side, so an INSERT needs no RETURNING to learn it
    (RETURNING must pass the SELECT policy, which a write-only insert may not).
    """
    return mapped_column(primary_key=True, server_default=GEN_UUID, default=uuid.uuid4)


def org_fk(*, nullable: bool = False) -> Mapped[Any]:
    """`organizacao_id uuid NOT NULL REFERENCES organizacoes_saas(id)`."""
    return mapped_column(ForeignKey("organizacoes_saas.id"), nullable=nullable)


def user_fk(*, nullable: bool = False) -> Mapped[Any]:
    """`usuario_id uuid NOT NULL REFERENCES usuarios(id)`."""
    return mapped_column(ForeignKey("usuarios.id"), nullable=nullable)


def created_at() -> Mapped[dt.datetime]:
    """`criado_em timestamptz NOT NULL DEFAULT now()`."""
    return mapped_column(server_default=NOW)


def updated_at() -> Mapped[dt.datetime]:
    """`atualizado_em timestamptz NOT NULL DEFAULT now()`; a trigger keeps it current on UPDATE."""
    return mapped_column(server_default=NOW)


def in_check(column: str, values: tuple[str, ...], *, nullable: bool = False) -> str:
    """SQL for a CHECK that keeps a status-like column inside its enumeration."""
    listed = ", ".join(f"'{v}'" for v in values)
    clause = f"{column} IN ({listed})"
    return f"{column} IS NULL OR {clause}" if nullable else clause
