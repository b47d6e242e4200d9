"""Revision 0001: the SECURITY DEFINER functions, the app's only cross-tenant reach.

Each runs as `conexoes_definer` (see security.py), has a fixed search_path and a narrow
signature, and is executable by `conexoes_app` only. Frozen at revision 0001.
"""

from __future__ import annotations

from alembic import op

from db.migrations.r0001.security import APP_ROLE, DEFINER_ROLE

HEADER = "SECURITY DEFINER SET search_path = public, pg_temp"

FUNCTIONS: dict[str, str] = {
    # A WAHA webhook names only its session: find whose session it is.
    "app_resolve_whatsapp_session(text)": f"""
CREATE FUNCTION app_resolve_whatsapp_session(p_session_name text)
RETURNS TABLE(organizacao_id uuid, usuario_id uuid, sessao_id uuid)
LANGUAGE sql STABLE {HEADER} AS $$
  SELECT s.organizacao_id, s.usuario_id, s.id
    FROM sessoes_whatsapp s
   WHERE s.session_name = p_session_name AND s.deletado_em IS NULL
$$;""",
    # A leadgen webhook names only the Facebook page (one page may serve several tenants).
    "app_resolve_meta_page(text)": f"""
CREATE FUNCTION app_resolve_meta_page(p_page_id text)
RETURNS TABLE(organizacao_id uuid, pagina_id uuid)
LANGUAGE sql STABLE {HEADER} AS $$
  SELECT p.organizacao_id, p.id
    FROM paginas_meta p
   WHERE p.page_id = p_page_id AND p.ativo IS DISTINCT FROM false
$$;""",
    # An Instagram webhook names only the recipient professional account (user_id).
    "app_resolve_instagram_account(text)": f"""
CREATE FUNCTION app_resolve_instagram_account(p_ig_user_id text)
RETURNS TABLE(organizacao_id uuid, conexao_id uuid)
LANGUAGE sql STABLE {HEADER} AS $$
  SELECT c.organizacao_id, c.id
    FROM conexoes_instagram c
   WHERE c.instagram_user_id = p_ig_user_id AND c.deletado_em IS NULL
$$;""",
    # A Google Calendar push notification names only its channel.
    "app_resolve_google_channel(text)": f"""
CREATE FUNCTION app_resolve_google_channel(p_channel_id text)
RETURNS TABLE(organizacao_id uuid, usuario_id uuid, conexao_id uuid)
LANGUAGE sql STABLE {HEADER} AS $$
  SELECT c.organizacao_id, c.usuario_id, c.id
    FROM conexoes_google c
   WHERE c.channel_id = p_channel_id AND c.deletado_em IS NULL
$$;""",
    # Workers serve every tenant: claim due jobs (or jobs whose worker's lease ran out) with
    # a lease. SKIP LOCKED keeps concurrent claimers off each other's rows; attempts are the
    # worker's business, so nothing is incremented here.
    "app_claim_jobs(text, integer, integer, text[])": f"""
CREATE FUNCTION app_claim_jobs(p_worker text, p_limit int, p_lease_seconds int,
                               p_operations text[] DEFAULT NULL)
RETURNS SETOF eventos_pendentes
LANGUAGE sql VOLATILE {HEADER} AS $$
  WITH due AS (
    SELECT e.id
      FROM eventos_pendentes e
     WHERE ((e.status = 'pending' AND e.proxima_tentativa <= now())
            OR (e.status = 'processing' AND e.lease_expires_at < now()))
       AND (p_operations IS NULL OR e.operacao = ANY (p_operations))
     ORDER BY e.proxima_tentativa, e.criado_em
     LIMIT LEAST(GREATEST(p_limit, 0), 1000)
       FOR UPDATE SKIP LOCKED
  )
  UPDATE eventos_pendentes e
     SET status = 'processing',
         lease_owner = p_worker,
         lease_expires_at = now() + make_interval(secs => GREATEST(p_lease_seconds, 0))
    FROM due
   WHERE e.id = due.id
  RETURNING e.*
$$;""",
    # The scheduler runs periodic work per tenant.
    "app_list_tenants()": f"""
CREATE FUNCTION app_list_tenants()
RETURNS SETOF uuid
LANGUAGE sql STABLE {HEADER} AS $$
  SELECT o.id FROM organizacoes_saas o ORDER BY o.criado_em, o.id
$$;""",
    # Organizations and users named in a verified token are created on first sight
    # (DESIGN "Running"); the token's role is kept current. A user id already registered
    # under another organization is left alone.
    "app_ensure_identity(uuid, uuid, text)": f"""
CREATE FUNCTION app_ensure_identity(p_org uuid, p_user uuid, p_role text)
RETURNS void
LANGUAGE plpgsql VOLATILE {HEADER} AS $$
BEGIN
  IF p_org IS NULL THEN
    RETURN;
  END IF;
  INSERT INTO organizacoes_saas (id, nome)
  VALUES (p_org, 'Organizacao ' || left(p_org::text, 8))
  ON CONFLICT (id) DO NOTHING;
  IF p_user IS NULL OR p_role IS NULL OR p_role NOT IN ('super_admin', 'admin', 'member') THEN
    RETURN;
  END IF;
  INSERT INTO usuarios AS u (id, organizacao_id, nome, role)
  VALUES (p_user, p_org, 'Usuario ' || left(p_user::text, 8), p_role)
  ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role
   WHERE u.organizacao_id = EXCLUDED.organizacao_id AND u.role IS DISTINCT FROM EXCLUDED.role;
END
$$;""",
}


def create() -> None:
    for signature, ddl in FUNCTIONS.items():
        op.execute(ddl)
        op.execute(f"ALTER FUNCTION {signature} OWNER TO {DEFINER_ROLE}")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP_ROLE}")


def drop() -> None:
    for signature in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
