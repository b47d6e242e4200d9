"""Google fake: OAuth consent and tokens, userinfo, Calendar API v3 with push notifications
(shared/providers.md sections 7 and 8)."""

from __future__ import annotations

from sandbox.google.app import GoogleFake, build_google_fake
from sandbox.google.settings import GoogleSettings

__all__ = ["GoogleFake", "GoogleSettings", "build_google_fake"]
