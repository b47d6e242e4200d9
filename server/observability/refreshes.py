"""Token refresh attempts, recorded in the refresh's own transaction and counted."""

from __future__ import annotations

import uuid

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import TokenRefreshAttempt
from server.observability import metrics
from server.security.redaction import redact

_MAX_ERROR = 300


async def record_refresh(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    connection_type: str,
    connection_id: uuid.UUID,
    error: BaseException | None,
) -> None:
    """connection_type: the contract's type word (`google_calendar`, `instagram_direct`)."""
    metrics.TOKEN_REFRESHES.labels(connection_type, "failure" if error else "success").inc()
    await session.execute(
        insert(TokenRefreshAttempt).values(
            id=uuid.uuid4(),
            organizacao_id=tenant_id,
            tipo=connection_type,
            conexao_id=connection_id,
            sucesso=error is None,
            erro=redact(f"{type(error).__name__}: {error}")[:_MAX_ERROR] if error else None,
        )
    )
