"""The Grafana dashboard and docs/operations.md name only metrics this code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import server.observability.metrics  # noqa: F401  (registers the server's collectors)
import webhooks_http.observability  # noqa: F401  (and the sidecar's)

ROOT = Path(__file__).resolve().parents[2]
_NAME = re.compile(r"\b((?:grpc_server|http|conexoes)_[a-z_0-9]+)")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _exported() -> set[str]:
    names = set()
    for collector in list(REGISTRY._collector_to_names):
        for family in collector.describe() if hasattr(collector, "describe") else ():
            names.add(family.name)
    return names


def _base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads((ROOT / "docs/grafana/conexoes.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {_base(n) for e in exprs for n in _NAME.findall(e)}
    assert used and used <= {_base(n) for n in _exported()}, used - _exported()


def test_operations_doc_names_only_exported_metrics() -> None:
    doc = (ROOT / "docs/operations.md").read_text()
    # Table names and prefixes ("`conexoes_queue_*`") are not metrics.
    used = {_base(n) for n in _NAME.findall(doc) if not n.endswith("_")}
    used -= {"conexoes_status_historico"}
    assert used <= {_base(n) for n in _exported()}, used - {_base(n) for n in _exported()}
