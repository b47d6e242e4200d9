"""The CRM link: the directory's mirror columns, custom fields, the change feed (outbox) and
outbound webhooks (`webhook_saida`).

- `usuarios`: `participa_distribuicao` (Lead Ads distributes to these), `core_atualizado_em`
  (the core's updated_at of the last write applied), `deletado_em`.
- `funis`: `ordem`, `core_atualizado_em`, `deletado_em`; `etapas_funil`: `deletado_em`.
- `contatos`: every e-mail and phone, state, CEP, country, consent, `core_atualizado_em`.
- `campos_customizados_crm`: the core's custom contact fields.
- `outbox_eventos` + `outbox_sequencias`: the change feed, numbered per tenant.
- `webhooks_saida`: a tenant's outbound webhook endpoints (secret encrypted).
- `app_purge_outbox(interval)`: retention, across tenants, recording per tenant the highest
  sequence removed so a consumer asking for an older one gets a clear error.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from db.migrations.r0001.security import APP_ROLE, DEFINER_ROLE, TENANT

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HEADER = "SECURITY DEFINER SET search_path = public, pg_temp"
NEW_TABLES = ("outbox_eventos", "outbox_sequencias", "campos_customizados_crm", "webhooks_saida")
TEXT_ARRAY = sa.text("'{}'::text[]")

PURGE_OUTBOX = f"""
CREATE FUNCTION app_purge_outbox(p_older_than interval)
RETURNS bigint
LANGUAGE plpgsql VOLATILE {HEADER} AS $$
DECLARE
  n_removed bigint;
BEGIN
  WITH gone AS (
    DELETE FROM outbox_eventos WHERE criado_em < now() - p_older_than
    RETURNING organizacao_id, sequencia
  ), highest AS (
    SELECT organizacao_id, max(sequencia) AS ate, count(*) AS n
      FROM gone GROUP BY organizacao_id
  ), marked AS (
    UPDATE outbox_sequencias s
       SET removida_ate = GREATEST(s.removida_ate, h.ate)
      FROM highest h
     WHERE s.organizacao_id = h.organizacao_id
    RETURNING h.n
  )
  SELECT COALESCE(sum(n), 0) INTO n_removed FROM marked;
  RETURN n_removed;
END
$$"""


def _timestamps(*, updated: bool = True) -> list[sa.schema.SchemaItem]:
    now = sa.text("now()")
    cols: list[sa.schema.SchemaItem] = [
        sa.Column("criado_em", sa.DateTime(timezone=True), server_default=now, nullable=False)
    ]
    if updated:
        cols.append(
            sa.Column(
                "atualizado_em", sa.DateTime(timezone=True), server_default=now, nullable=False
            )
        )
    return cols


def _org(table: str) -> list[sa.schema.SchemaItem]:
    return [
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organizacao_id"], ["organizacoes_saas.id"], name=op.f(f"{table}_organizacao_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"{table}_pkey")),
    ]


def _mirror_columns() -> None:
    stamp = sa.DateTime(timezone=True)
    op.add_column(
        "usuarios",
        sa.Column(
            "participa_distribuicao", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    for table in ("usuarios", "funis", "contatos"):
        op.add_column(table, sa.Column("core_atualizado_em", stamp, nullable=True))
    for table in ("usuarios", "funis", "etapas_funil"):
        op.add_column(table, sa.Column("deletado_em", stamp, nullable=True))
    op.add_column("funis", sa.Column("ordem", sa.Integer(), server_default="0", nullable=False))
    for name in ("emails", "telefones"):
        op.add_column(
            "contatos",
            sa.Column(name, postgresql.ARRAY(sa.Text()), server_default=TEXT_ARRAY, nullable=False),
        )
    op.add_column("contatos", sa.Column("estado", sa.String(length=100), nullable=True))
    op.add_column("contatos", sa.Column("cep", sa.String(length=20), nullable=True))
    op.add_column("contatos", sa.Column("pais", sa.String(length=2), nullable=True))
    op.add_column("contatos", sa.Column("consentimento", sa.Boolean(), nullable=True))


def _tables() -> None:
    op.create_table(
        "outbox_eventos",
        *_org("outbox_eventos"),
        sa.Column("sequencia", sa.BigInteger(), nullable=False),
        sa.Column("tipo", sa.String(length=50), nullable=False),
        sa.Column("usuario_id", sa.Uuid(), nullable=True),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        *_timestamps(updated=False),
        sa.UniqueConstraint(
            "organizacao_id", "sequencia", name=op.f("outbox_eventos_organizacao_id_sequencia_key")
        ),
    )
    op.create_index("idx_outbox_eventos_criado_em", "outbox_eventos", ["criado_em"])
    op.create_table(
        "outbox_sequencias",
        *_org("outbox_sequencias"),
        sa.Column("ultima_sequencia", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("removida_ate", sa.BigInteger(), server_default="0", nullable=False),
        sa.UniqueConstraint("organizacao_id", name=op.f("outbox_sequencias_organizacao_id_key")),
    )
    op.create_table(
        "campos_customizados_crm",
        *_org("campos_customizados_crm"),
        sa.Column("campo_id", sa.String(length=64), nullable=False),
        sa.Column("rotulo", sa.String(length=255), nullable=False),
        sa.Column("tipo", sa.String(length=20), nullable=False),
        sa.Column("core_atualizado_em", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deletado_em", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "tipo IN ('text', 'number', 'date', 'boolean', 'select', 'email', 'phone', 'url')",
            name=op.f("campos_customizados_crm_tipo_check"),
        ),
        sa.UniqueConstraint(
            "organizacao_id",
            "campo_id",
            name=op.f("campos_customizados_crm_organizacao_id_campo_id_key"),
        ),
    )
    op.create_table(
        "webhooks_saida",
        *_org("webhooks_saida"),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column(
            "eventos", postgresql.ARRAY(sa.Text()), server_default=TEXT_ARRAY, nullable=False
        ),
        sa.Column("descricao", sa.String(length=255), nullable=True),
        sa.Column("segredo_encrypted", sa.Text(), nullable=False),
        sa.Column("ativo", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("criado_por", sa.Uuid(), nullable=True),
        *_timestamps(),
        sa.Column("deletado_em", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["criado_por"], ["usuarios.id"], name=op.f("webhooks_saida_criado_por_fkey")
        ),
    )
    op.create_index(
        "idx_webhooks_saida_org",
        "webhooks_saida",
        ["organizacao_id"],
        postgresql_where=sa.text("ativo"),
    )


def _secure() -> None:
    predicate = f"organizacao_id = {TENANT}"
    for table in NEW_TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f'CREATE POLICY "tenant_isolation" ON {table} '
            f"USING ({predicate}) WITH CHECK ({predicate})"
        )
    for table in ("campos_customizados_crm", "webhooks_saida"):
        op.execute(
            f"CREATE TRIGGER trg_{table}_atualizado_em BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION set_atualizado_em()"
        )
    # Retention crosses tenants: only through the definer function.
    op.execute(f"GRANT SELECT, DELETE ON outbox_eventos TO {DEFINER_ROLE}")
    op.execute(f"GRANT SELECT, UPDATE ON outbox_sequencias TO {DEFINER_ROLE}")
    for table in ("outbox_eventos", "outbox_sequencias"):
        op.execute(
            f'CREATE POLICY "definer_access" ON {table} TO {DEFINER_ROLE} USING (true) '
            "WITH CHECK (true)"
        )
    op.execute(PURGE_OUTBOX)
    signature = "app_purge_outbox(interval)"
    op.execute(f"ALTER FUNCTION {signature} OWNER TO {DEFINER_ROLE}")
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP_ROLE}")


def upgrade() -> None:
    _mirror_columns()
    _tables()
    _secure()


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS app_purge_outbox(interval)")
    for table in reversed(NEW_TABLES):
        op.drop_table(table)
    for name in ("consentimento", "pais", "cep", "estado", "telefones", "emails"):
        op.drop_column("contatos", name)
    op.drop_column("funis", "ordem")
    for table in ("usuarios", "funis", "etapas_funil"):
        op.drop_column(table, "deletado_em")
    for table in ("usuarios", "funis", "contatos"):
        op.drop_column(table, "core_atualizado_em")
    op.drop_column("usuarios", "participa_distribuicao")
