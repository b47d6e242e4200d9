"""Figures -> the KPI protos (pure functions)."""

from __future__ import annotations

import datetime as dt

from renove.conexoes.v1 import kpis_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2 as rpb

from server.kpis.availability import Availability, availability
from server.kpis.figures import Counts, Figures
from server.protoconv import timestamp


def connection_type(word: str) -> rpb.ConnectionType.ValueType:
    name = f"CONNECTION_TYPE_{word.upper()}"
    if name in rpb.ConnectionType.DESCRIPTOR.values_by_name:
        return rpb.ConnectionType.Value(name)
    return rpb.CONNECTION_TYPE_UNSPECIFIED


def type_word(value: rpb.ConnectionType.ValueType) -> str:
    return rpb.ConnectionType.Name(value).removeprefix("CONNECTION_TYPE_").lower()


def _rate(counts: Counts | None, empty: float) -> float:
    if counts is None or counts.total == 0:
        return empty
    return counts.good / counts.total


def kpis_response(
    figures: Figures, start: dt.datetime, end: dt.datetime, types: list[str]
) -> pb.GetConnectionKpisResponse:
    response = pb.GetConnectionKpisResponse(start_time=timestamp(start), end_time=timestamp(end))
    by_type: dict[str, list[Availability]] = {t: [] for t in types}
    for (tipo, connection_id), changes in figures.history.items():
        seen = availability(changes, start, end)
        if seen.observed_s <= 0 and seen.status in ("", "removed"):
            continue  # gone before the period, or never in it
        by_type.setdefault(tipo, []).append(seen)
        response.connections.append(
            pb.ConnectionKpis(
                connection_type=connection_type(tipo),
                connection_id=str(connection_id),
                status=seen.status,
                observed_seconds=seen.observed_s,
                up_seconds=seen.up_s,
                uptime_ratio=seen.uptime_ratio,
                disconnections=seen.disconnections,
                reconnections=len(seen.reconnection_spells),
                mean_reconnection_seconds=seen.mean_reconnection_s,
                max_reconnection_seconds=max(seen.reconnection_spells, default=0.0),
            )
        )
    for tipo in types:
        seen_all = by_type.get(tipo, [])
        observed = sum(a.observed_s for a in seen_all)
        spells = [s for a in seen_all for s in a.reconnection_spells]
        jobs = figures.jobs.get(tipo)
        response.types.append(
            pb.ConnectionTypeKpis(
                connection_type=connection_type(tipo),
                connections=sum(1 for a in seen_all if a.observed_s > 0),
                uptime_ratio=sum(a.up_s for a in seen_all) / observed if observed else 1.0,
                mean_reconnection_seconds=sum(spells) / len(spells) if spells else 0.0,
                webhooks_accepted=_total(figures.webhooks.get(tipo)),
                webhooks_processed=_good(figures.webhooks.get(tipo)),
                webhook_delivery_rate=_rate(figures.webhooks.get(tipo), 1.0),
                token_refreshes=_total(figures.refreshes.get(tipo)),
                token_refreshes_succeeded=_good(figures.refreshes.get(tipo)),
                token_refresh_success_rate=_rate(figures.refreshes.get(tipo), 1.0),
                jobs_finished=_total(jobs),
                jobs_failed=_total(jobs) - _good(jobs),
                error_rate=1.0 - _rate(jobs, 1.0),
            )
        )
    return response


def _total(counts: Counts | None) -> int:
    return counts.total if counts else 0


def _good(counts: Counts | None) -> int:
    return counts.good if counts else 0


def change_proto(tipo: str, connection_id: str, status: str, reason: str | None,
                 at: dt.datetime) -> pb.ConnectionStatusChange:  # fmt: skip
    return pb.ConnectionStatusChange(
        connection_type=connection_type(tipo),
        connection_id=connection_id,
        status=status,
        reason=reason or "",
        changed_at=timestamp(at),
    )
