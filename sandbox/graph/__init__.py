"""Meta Graph API fake: Facebook Login dialog, Graph endpoints for Lead Ads, signed leadgen
webhooks and control endpoints (docs/providers.md, Meta Graph)."""

from __future__ import annotations

from sandbox.graph.app import GraphFake, build_graph_fake
from sandbox.graph.settings import GraphSettings
from sandbox.graph.webhooks import sign

__all__ = ["GraphFake", "GraphSettings", "build_graph_fake", "sign"]
