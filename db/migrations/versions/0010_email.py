"""E-mail: the `emails_enviados` ledger (one row per e-mail sent from a user's connection),
under forced tenant isolation and the personal-connection rule (a member sees their own).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from db.migrations.r0001.security import APP_ROLE, ROLE, TENANT, USER

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "emails_enviados"


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("usuario_id", sa.Uuid(), nullable=False),
        sa.Column("conexao_id", sa.Uuid(), nullable=True),
        sa.Column("tipo", sa.String(length=20), nullable=False),
        sa.Column("remetente", sa.String(length=255), nullable=False),
        sa.Column(
            "destinatarios",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("assunto", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("mensagem", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("thread_id", sa.String(length=255), nullable=True),
        sa.Column("contato_id", sa.Uuid(), nullable=True),
        sa.Column("oportunidade_id", sa.Uuid(), nullable=True),
        sa.Column(
            "rastrear_abertura", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("aberturas", sa.Integer(), server_default="0", nullable=False),
        sa.Column("primeira_abertura_em", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ultima_abertura_em", sa.DateTime(timezone=True), nullable=True),
        sa.Column("erro", sa.Text(), nullable=True),
        sa.Column("enviado_em", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "atualizado_em",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "tipo IN ('gmail_oauth', 'smtp_manual')", name=op.f(f"{_TABLE}_tipo_check")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed')", name=op.f(f"{_TABLE}_status_check")
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"], ["organizacoes_saas.id"], name=op.f(f"{_TABLE}_organizacao_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["usuario_id"], ["usuarios.id"], name=op.f(f"{_TABLE}_usuario_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["conexao_id"],
            ["conexoes_email.id"],
            name=op.f(f"{_TABLE}_conexao_id_fkey"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["contato_id"], ["contatos.id"], name=op.f(f"{_TABLE}_contato_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["oportunidade_id"], ["oportunidades.id"], name=op.f(f"{_TABLE}_oportunidade_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"{_TABLE}_pkey")),
    )
    op.create_index(
        "idx_emails_enviados_user",
        _TABLE,
        ["organizacao_id", "usuario_id", sa.text("criado_em DESC")],
    )
    op.create_index("idx_emails_enviados_message_id", _TABLE, ["organizacao_id", "message_id"])
    op.execute(
        f"CREATE TRIGGER trg_{_TABLE}_atualizado_em BEFORE UPDATE ON {_TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION set_atualizado_em()"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {_TABLE} TO {APP_ROLE}")
    op.execute(f"ALTER TABLE {_TABLE} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {_TABLE} FORCE ROW LEVEL SECURITY")
    predicate = f"organizacao_id = {TENANT}"
    op.execute(
        f'CREATE POLICY "tenant_isolation" ON {_TABLE} USING ({predicate}) WITH CHECK ({predicate})'
    )
    own = f"usuario_id = {USER} OR {ROLE} IN ('admin', 'super_admin', 'service')"
    op.execute(
        f'CREATE POLICY "user_own_connection" ON {_TABLE} AS RESTRICTIVE TO {APP_ROLE} '
        f"USING ({own}) WITH CHECK ({own})"
    )


def downgrade() -> None:
    op.drop_table(_TABLE)
