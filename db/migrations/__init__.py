"""Alembic migrations (run as the owner role; see db.bootstrap)."""
