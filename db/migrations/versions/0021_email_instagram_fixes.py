"""One Instagram account, one live connection: a partial unique index on
`conexoes_instagram.instagram_user_id` where `deletado_em IS NULL`.

Webhooks name only the account, so two live holders would split (or lose) its DMs. The check
before connecting cannot see a concurrent callback; the index makes the second one fail.
Should duplicates exist already, the earliest-connected holder keeps the account and the others
are disconnected (token forgotten, reason kept in `ultimo_erro`) so the index can be built.

Revision ID: 0021
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_conexoes_ig_live_account"


def upgrade() -> None:
    op.execute(
        """
        UPDATE conexoes_instagram c
           SET deletado_em = now(), access_token_encrypted = '', webhook_subscribed = false,
               ultimo_erro = 'conta Instagram conectada em outra conexao'
          FROM (SELECT id, row_number() OVER (
                         PARTITION BY instagram_user_id ORDER BY conectado_em NULLS LAST, id
                       ) AS n
                  FROM conexoes_instagram WHERE deletado_em IS NULL) d
         WHERE c.id = d.id AND d.n > 1
        """
    )
    op.create_index(
        INDEX,
        "conexoes_instagram",
        ["instagram_user_id"],
        unique=True,
        postgresql_where="deletado_em IS NULL",
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="conexoes_instagram")
