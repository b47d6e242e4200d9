"""The bearer token of a call's metadata (the call guard, guard.py, verifies it)."""

from __future__ import annotations

from typing import Any

from server.errors import Unauthenticated


def bearer_token(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    raise Unauthenticated("missing authorization metadata")
