"""Revision 0001, security: roles, grants, row-level security and the cross-tenant functions.

Two roles are cluster-wide (roles are not per database), so creation tolerates a concurrent
creator and a downgrade leaves them in place for the other databases of the cluster:

- `conexoes_app`: the role the service logs in as. Owns nothing, no BYPASSRLS; reaches tenant
  rows only through the policies below.
- `conexoes_definer`: NOLOGIN. Owns the SECURITY DEFINER functions, the only cross-tenant path;
  its `definer_access` policies open exactly the tables those functions read or write.

Frozen at revision 0001.
"""

from __future__ import annotations

from alembic import op

APP_ROLE = "conexoes_app"
DEFINER_ROLE = "conexoes_definer"

TENANT = "NULLIF(current_setting('app.current_tenant', true), '')::uuid"
USER = "NULLIF(current_setting('app.current_user', true), '')::uuid"
ROLE = "current_setting('app.current_role', true)"

# Table -> privileges of the app role. audit_log is append-only.
APP_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
APPEND_ONLY = {"audit_log": "SELECT, INSERT"}
# Tables the SECURITY DEFINER functions touch, and how.
DEFINER_PRIVILEGES = {
    "organizacoes_saas": "SELECT, INSERT",
    "usuarios": "SELECT, INSERT, UPDATE",
    "sessoes_whatsapp": "SELECT",
    "paginas_meta": "SELECT",
    "conexoes_instagram": "SELECT",
    "conexoes_google": "SELECT",
    "eventos_pendentes": "SELECT, UPDATE",
}


def _create_role(name: str, attributes: str) -> str:
    # A concurrent migration in another database may create the role first.
    return f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
    CREATE ROLE {name} {attributes};
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END $$;
"""


def create_roles() -> None:
    op.execute(_create_role(APP_ROLE, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"))
    op.execute(_create_role(DEFINER_ROLE, "NOLOGIN NOSUPERUSER NOBYPASSRLS"))
    # A pre-existing role must not keep powers it should not have.
    op.execute(f"""
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname IN ('{APP_ROLE}', '{DEFINER_ROLE}')
             AND (rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb)) THEN
    ALTER ROLE {APP_ROLE} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    ALTER ROLE {DEFINER_ROLE} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
  -- A non-superuser migration owner must be able to hand functions to the definer role.
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
     AND NOT pg_has_role(current_user, '{DEFINER_ROLE}', 'MEMBER') THEN
    EXECUTE format('GRANT {DEFINER_ROLE} TO %I', current_user);
  END IF;
END $$;
""")


def grant(tables: tuple[str, ...]) -> None:
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}, {DEFINER_ROLE}")
    # ALTER FUNCTION ... OWNER TO needs the new owner to hold CREATE on the schema.
    op.execute(f"GRANT CREATE ON SCHEMA public TO {DEFINER_ROLE}")
    for table in tables:
        privileges = APPEND_ONLY.get(table, APP_PRIVILEGES)
        op.execute(f"GRANT {privileges} ON {table} TO {APP_ROLE}")
    for table, privileges in DEFINER_PRIVILEGES.items():
        op.execute(f"GRANT {privileges} ON {table} TO {DEFINER_ROLE}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")


def revoke_schema() -> None:
    op.execute(f"REVOKE ALL ON SCHEMA public FROM {APP_ROLE}, {DEFINER_ROLE}")


def _force(table: str) -> None:
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")


def _policy(table: str, name: str, predicate: str, extra: str = "") -> None:
    op.execute(
        f'CREATE POLICY "{name}" ON {table} {extra} USING ({predicate}) WITH CHECK ({predicate})'
    )


def enable_rls(
    tenant_tables: frozenset[str],
    personal_tables: frozenset[str],
    platform_row_tables: frozenset[str],
) -> None:
    """The spec's `tenant_isolation` everywhere, `user_own_connection` on personal tables."""
    for table in sorted(tenant_tables):
        _force(table)
        if table in platform_row_tables:
            # organizacao_id NULL: a platform-level row, for the super admin only.
            predicate = (
                f"organizacao_id = {TENANT} OR (organizacao_id IS NULL AND {ROLE} = 'super_admin')"
            )
        elif table == "webhook_inbox":
            # NULL until resolved: deliveries arrive as the service, before the tenant is known.
            predicate = (
                f"organizacao_id = {TENANT} OR "
                f"(organizacao_id IS NULL AND {ROLE} IN ('service', 'super_admin'))"
            )
        else:
            predicate = f"organizacao_id = {TENANT}"
        _policy(table, "tenant_isolation", predicate)
        if table in platform_row_tables:
            # Workers record platform-level events (a breaker opened) they may not read back.
            op.execute(
                f'CREATE POLICY "platform_insert" ON {table} FOR INSERT '
                f"WITH CHECK (organizacao_id IS NULL AND {ROLE} = 'service')"
            )
        if table in personal_tables:
            # Both must hold (RESTRICTIVE): a member reaches only their own connection.
            _policy(
                table,
                "user_own_connection",
                f"usuario_id = {USER} OR {ROLE} IN ('admin', 'super_admin', 'service')",
                extra=f"AS RESTRICTIVE TO {APP_ROLE}",
            )
    _force("organizacoes_saas")
    _policy("organizacoes_saas", "tenant_isolation", f"id = {TENANT}")
    for table in DEFINER_PRIVILEGES:
        _policy(table, "definer_access", "true", extra=f"TO {DEFINER_ROLE}")


HEALTH_VIEW = """
CREATE VIEW integracao_health WITH (security_invoker = true) AS
SELECT
  organizacao_id,
  tipo,
  COUNT(*) FILTER (WHERE status = 'pending') AS pendentes,
  COUNT(*) FILTER (WHERE status = 'failed') AS falhas_permanentes,
  COUNT(*) FILTER (WHERE status = 'completed') AS sucesso,
  AVG(tentativas) FILTER (WHERE status = 'completed') AS media_tentativas,
  MAX(criado_em) FILTER (WHERE status = 'failed') AS ultima_falha
FROM eventos_pendentes
WHERE criado_em > now() - interval '24 hours'
GROUP BY organizacao_id, tipo
"""


def create_view() -> None:
    op.execute(HEALTH_VIEW)
    op.execute(f"GRANT SELECT ON integracao_health TO {APP_ROLE}")


# One statement per item: asyncpg runs each as a prepared statement.
TRIGGERS: tuple[str, ...] = (
    """
CREATE FUNCTION set_atualizado_em() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.atualizado_em := now();
  RETURN NEW;
END $$""",
    # Section 7.8: 24 hours to answer from the user's last Instagram message.
    """
CREATE FUNCTION update_instagram_window() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.canal = 'instagram' AND NEW.direcao = 'inbound' THEN
    NEW.instagram_window_expires_at := COALESCE(NEW.enviado_em, NEW.criado_em, now())
                                       + INTERVAL '24 hours';
  END IF;
  RETURN NEW;
END $$""",
    """
-- The contact carries the latest window, so "can I still reply?" is one row away.
CREATE FUNCTION update_contact_instagram_window() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.instagram_window_expires_at IS NOT NULL AND NEW.contato_id IS NOT NULL THEN
    UPDATE contatos
       SET instagram_window_expires_at = GREATEST(
             COALESCE(instagram_window_expires_at, NEW.instagram_window_expires_at),
             NEW.instagram_window_expires_at)
     WHERE id = NEW.contato_id;
  END IF;
  RETURN NULL;
END $$""",
    """CREATE TRIGGER trg_conversas_instagram_window BEFORE INSERT ON conversas
  FOR EACH ROW EXECUTE FUNCTION update_instagram_window()""",
    """CREATE TRIGGER trg_conversas_contact_window AFTER INSERT ON conversas
  FOR EACH ROW EXECUTE FUNCTION update_contact_instagram_window()""",
)


def create_triggers(tables_with_updated_at: tuple[str, ...]) -> None:
    for statement in TRIGGERS:
        op.execute(statement)
    for table in tables_with_updated_at:
        op.execute(
            f"CREATE TRIGGER trg_{table}_atualizado_em BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION set_atualizado_em()"
        )


def drop_triggers() -> None:
    for fn in ("update_contact_instagram_window", "update_instagram_window", "set_atualizado_em"):
        op.execute(f"DROP FUNCTION IF EXISTS {fn}() CASCADE")
