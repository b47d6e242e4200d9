"""What a server or worker process runs for observability, started and stopped as one."""

from __future__ import annotations

from db.uow import Database
from server.observability.gauges import GaugeSampler
from server.observability.listener import MetricsListener, start_metrics_listener
from server.settings import Settings


class ProcessObservability:
    """The metrics listener (when `CONEXOES_METRICS_ADDR` is set), the gauge sampler and
    the tracer (when `OTEL_EXPORTER_OTLP_ENDPOINT` is set)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._sampler = GaugeSampler(db, settings.metrics_sample_seconds)
        self.listener: MetricsListener | None = None

    def start(self) -> None:
        if self._settings.metrics_addr and self._settings.observability:
            self.listener = start_metrics_listener(self._settings.metrics_addr)
            self._sampler.start()

    async def stop(self) -> None:
        await self._sampler.stop()
        if self.listener is not None:
            self.listener.close()
            self.listener = None
