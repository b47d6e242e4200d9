"""Integration health (the spec's integracao_health view) and circuit breaker states."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import grpc
from google.protobuf import duration_pb2
from renove.conexoes.v1 import connections_service_pb2 as pb
from sqlalchemy import text

from server.interceptors.context import current_caller
from server.protoconv import timestamp
from server.resilience import queue
from server.resilience.breaker import BreakerSnapshot, BreakerState

if TYPE_CHECKING:
    from server.bootstrap import Deps

_STATES = {
    BreakerState.CLOSED: pb.CIRCUIT_STATE_CLOSED,
    BreakerState.OPEN: pb.CIRCUIT_STATE_OPEN,
    BreakerState.HALF_OPEN: pb.CIRCUIT_STATE_HALF_OPEN,
}

# The view already keeps the last 24 hours; RLS (security_invoker) keeps it to the tenant.
_HEALTH = text(
    "SELECT tipo, pendentes, falhas_permanentes, sucesso, media_tentativas, ultima_falha"
    " FROM integracao_health WHERE organizacao_id = :tenant ORDER BY tipo"
)


def breaker_proto(snap: BreakerSnapshot) -> pb.CircuitBreaker:
    reset = duration_pb2.Duration()
    reset.FromNanoseconds(int(snap.reset_timeout_s * 1e9))
    return pb.CircuitBreaker(
        provider=snap.provider,
        state=_STATES[snap.state],
        failures=snap.failures,
        failure_threshold=snap.failure_threshold,
        reset_timeout=reset,
        opened_at=timestamp(snap.opened_at),
        next_probe_at=timestamp(snap.next_probe_at),
    )


class HealthRpcs:
    deps: Deps

    async def GetIntegrationHealth(
        self, request: pb.GetIntegrationHealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetIntegrationHealthResponse:
        caller = current_caller()
        tenant = caller.require_tenant()
        async with self.deps.db.unit_of_work(caller) as session:
            rows = list(await session.execute(_HEALTH, {"tenant": tenant}))
            backlog = await queue.tenant_backlog(session)
            now: dt.datetime = await session.scalar(text("SELECT now()"))
        return pb.GetIntegrationHealthResponse(
            tipos=[
                pb.IntegrationHealth(
                    tipo=r.tipo,
                    pendentes=int(r.pendentes),
                    falhas_permanentes=int(r.falhas_permanentes),
                    sucesso=int(r.sucesso),
                    media_tentativas=float(r.media_tentativas or 0.0),
                    ultima_falha=timestamp(r.ultima_falha),
                )
                for r in rows
            ],
            window_start=timestamp(now - dt.timedelta(hours=24)),
            window_end=timestamp(now),
            total_pendentes=backlog,
        )

    async def ListCircuitBreakers(
        self, request: pb.ListCircuitBreakersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCircuitBreakersResponse:
        # This replica's view: breakers live in each process (see server/resilience/breaker.py).
        snapshots = sorted(self.deps.breakers.snapshot(), key=lambda s: s.provider)
        return pb.ListCircuitBreakersResponse(
            circuit_breakers=[breaker_proto(s) for s in snapshots]
        )
