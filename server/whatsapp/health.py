"""The WAHA health check (every 5 minutes by default): our rows reconciled with WAHA's truth.

Webhooks can be lost (WAHA gave up retrying, our sidecar was down past its retries), so the
status is probed, not guessed. For each live session of each tenant: GET the session from
WAHA (through the "waha" breaker, which alerts the super admin when it opens); a status that
differs is applied as if WAHA had sent it; a session WAHA no longer knows is marked
disconnected (session_missing) and its owner alerted.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, text

from db.models import WhatsAppSession
from server.auth.caller import Caller, Role
from server.errors import CircuitOpen, PlatformNotConfigured
from server.providers.errors import ProviderError
from server.providers.waha import WahaClient, WahaSession, is_not_found
from server.whatsapp import status as st
from server.whatsapp.connection import waha
from server.whatsapp.webhook import apply_session_status

if TYPE_CHECKING:
    from server.bootstrap import Deps

_log = logging.getLogger(__name__)
SCHEDULE_NAME = "whatsapp_health"
# A row in these states is expected to exist in WAHA.
_LIVE = (st.QR_PENDING, st.CONNECTING, st.CONNECTED)
# WAHA's status for "this session is gone" (404): treated like STOPPED, with its own reason.
_MISSING = "__missing__"


@dataclass
class HealthReport:
    checked: int = 0
    changed: int = 0
    missing: int = 0
    waha_unreachable: bool = False


async def check_sessions(deps: Deps) -> HealthReport:
    """Reconcile every live session of every tenant with WAHA. Stops at the first outage."""
    report = HealthReport()
    try:
        client = await waha(deps)
    except PlatformNotConfigured as exc:  # nothing to check against
        _log.info("WhatsApp health check skipped: %s", exc)
        return report
    async with deps.db.system() as tx:
        tenants = [uuid.UUID(str(t)) for t in await tx.scalars(text("SELECT app_list_tenants()"))]
    for tenant in tenants:
        if not await _check_tenant(deps, client, tenant, report):
            report.waha_unreachable = True
            break
    return report


async def _check_tenant(
    deps: Deps, client: WahaClient, tenant: uuid.UUID, report: HealthReport
) -> bool:
    caller = Caller(role=Role.SERVICE, tenant_id=tenant)
    async with deps.db.unit_of_work(caller) as tx:
        rows = list(
            await tx.scalars(
                select(WhatsAppSession).where(
                    WhatsAppSession.deletado_em.is_(None), WhatsAppSession.status.in_(_LIVE)
                )
            )
        )
    for row in rows:
        report.checked += 1
        try:
            async with deps.breakers.guard("waha"):
                try:
                    current: WahaSession | None = await client.get_session(row.session_name)
                except ProviderError as exc:
                    if not is_not_found(exc):
                        raise
                    current = None
        except (ProviderError, CircuitOpen) as exc:
            # The breaker counted it (and alerts the super admin once it opens).
            _log.warning("WAHA unreachable during the health check: %s", type(exc).__name__)
            return False
        async with deps.db.unit_of_work(caller) as tx:
            fresh = await tx.get(WhatsAppSession, row.id, with_for_update=True)
            if fresh is None or fresh.status not in _LIVE:
                continue
            if current is None:
                report.missing += 1
                fresh.motivo_desconexao = st.SESSION_MISSING
                outcome = await apply_session_status(
                    deps, tx, fresh, "STOPPED", me=None, at=deps.clock.now()
                )
            elif st.ours(current.status) != fresh.status or (
                current.status == "WORKING" and current.me and not fresh.phone_number
            ):
                outcome = await apply_session_status(
                    deps, tx, fresh, current.status, me=current.me, at=deps.clock.now()
                )
            else:
                continue
            if outcome.change:
                report.changed += 1
    return True
