"""WAHA (WhatsApp HTTP API) fake: WAHA's API and webhooks plus control endpoints."""

from __future__ import annotations

from sandbox.waha.app import WahaFake, build_waha_fake
from sandbox.waha.webhooks import sign

__all__ = ["WahaFake", "build_waha_fake", "sign"]
