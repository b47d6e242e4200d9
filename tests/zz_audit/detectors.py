"""What the secrecy scan looks for: the suite's own secrets and the shapes of the providers'
credentials (as the sandbox mints them, after the providers)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tests.integration.ingress_helpers import IG_SECRET, META_SECRET, VERIFY_TOKEN, WAHA_KEY
from tests.support.grpc_server import TEST_JWT_SECRET

KNOWN_SECRETS = {
    "JWT signing secret": TEST_JWT_SECRET,
    "WAHA webhook HMAC key": WAHA_KEY,
    "Meta app secret": META_SECRET,
    "Instagram app secret": IG_SECRET,
    "Meta verify token": VERIFY_TOKEN,
}
PATTERNS = {
    "Meta access token": re.compile(r"\bEAA[A-Za-z0-9_\-]{20,}"),
    "Instagram access token": re.compile(r"\bIG(?:AA|Q)[A-Za-z0-9_\-]{20,}"),
    "Meta/Instagram authorization code": re.compile(r"\bAQB[A-Za-z0-9_\-]{24,}"),
    "Google access token": re.compile(r"\bya29\.[A-Za-z0-9_\-.]{10,}"),
    "Google refresh token": re.compile(r"\b1//0g[A-Za-z0-9_\-]{20,}"),
    "Google authorization code": re.compile(r"\b4/0Ab[A-Za-z0-9_\-]{20,}"),
    "bearer JWT": re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
}


def findings(source: str, blob: str) -> Iterator[str]:
    for name, value in KNOWN_SECRETS.items():
        if value in blob:
            yield f"{source}: the {name}"
    for name, pattern in PATTERNS.items():
        found = pattern.search(blob)
        if found:
            yield f"{source}: a {name} ({found.group()[:12]}...)"
