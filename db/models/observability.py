"""What operators read the spec's KPIs from: every connection status change, every token
refresh attempt.

Rows are written by the database (a trigger on each connection table, migration 0014) or in the
same transaction as the refresh they record, so the history cannot miss a transition. No
foreign key to the tenant: a connection removed with its tenant still writes its last row.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import NOW, Base, uuid_pk


class ConnectionStatusChange(Base):
    """`conexoes_status_historico`: one row per status a connection entered, with its reason.

    `status` is the connection table's own word (`connected`, `active`, `expired`, ...) or
    `removed` when the row was deleted or soft-deleted.
    """

    __tablename__ = "conexoes_status_historico"
    __table_args__ = (
        Index(
            "idx_conexoes_status_historico_conexao",
            "organizacao_id",
            "tipo",
            "conexao_id",
            "em",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID]
    tipo: Mapped[str] = mapped_column(String(40))
    conexao_id: Mapped[uuid.UUID]
    status: Mapped[str] = mapped_column(String(20))
    motivo: Mapped[str | None]
    em: Mapped[dt.datetime] = mapped_column(server_default=NOW)


class TokenRefreshAttempt(Base):
    """`tokens_renovacoes`: one row per OAuth token refresh attempt and whether it worked."""

    __tablename__ = "tokens_renovacoes"
    __table_args__ = (
        Index("idx_tokens_renovacoes_org", "organizacao_id", "tipo", text("em DESC")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID]
    tipo: Mapped[str] = mapped_column(String(40))
    conexao_id: Mapped[uuid.UUID]
    sucesso: Mapped[bool]
    erro: Mapped[str | None]
    em: Mapped[dt.datetime] = mapped_column(server_default=NOW)
