"""Meta Lead Ads: `conexoes_meta.scopes_concedidos` and `conectado_por`, and the ledger
`leads_meta_recebidos` (one row per leadgen id per tenant), under the same forced tenant
isolation as every tenant table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.migrations.r0001.security import APP_ROLE, TENANT

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "leads_meta_recebidos"


def upgrade() -> None:
    op.add_column(
        "conexoes_meta", sa.Column("scopes_concedidos", sa.ARRAY(sa.Text()), nullable=True)
    )
    op.add_column("conexoes_meta", sa.Column("conectado_por", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("conexoes_meta_conectado_por_fkey"),
        "conexoes_meta",
        "usuarios",
        ["conectado_por"],
        ["id"],
    )
    op.create_table(
        _TABLE,
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("leadgen_id", sa.String(length=50), nullable=False),
        sa.Column("page_id", sa.String(length=50), nullable=False),
        sa.Column("form_id", sa.String(length=50), nullable=False),
        sa.Column("formulario_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("contato_id", sa.Uuid(), nullable=True),
        sa.Column("oportunidade_id", sa.Uuid(), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("origem", sa.String(length=20), server_default="webhook", nullable=False),
        sa.Column("lead_criado_em", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('processado', 'sem_mapeamento', 'inativo')",
            name=op.f(f"{_TABLE}_status_check"),
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"], ["organizacoes_saas.id"], name=op.f(f"{_TABLE}_organizacao_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["formulario_id"],
            ["formularios_lead_ads.id"],
            name=op.f(f"{_TABLE}_formulario_id_fkey"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["contato_id"], ["contatos.id"], name=op.f(f"{_TABLE}_contato_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["oportunidade_id"], ["oportunidades.id"], name=op.f(f"{_TABLE}_oportunidade_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["usuarios.id"], name=op.f(f"{_TABLE}_owner_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"{_TABLE}_pkey")),
        sa.UniqueConstraint(
            "organizacao_id", "leadgen_id", name=op.f(f"{_TABLE}_organizacao_id_leadgen_id_key")
        ),
    )
    op.create_index(
        "idx_leads_meta_form",
        _TABLE,
        ["organizacao_id", "form_id", sa.text("criado_em DESC")],
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {_TABLE} TO {APP_ROLE}")
    op.execute(f"ALTER TABLE {_TABLE} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {_TABLE} FORCE ROW LEVEL SECURITY")
    predicate = f"organizacao_id = {TENANT}"
    op.execute(
        f'CREATE POLICY "tenant_isolation" ON {_TABLE} USING ({predicate}) WITH CHECK ({predicate})'
    )


def downgrade() -> None:
    op.drop_table(_TABLE)
    op.drop_constraint(op.f("conexoes_meta_conectado_por_fkey"), "conexoes_meta")
    op.drop_column("conexoes_meta", "conectado_por")
    op.drop_column("conexoes_meta", "scopes_concedidos")
