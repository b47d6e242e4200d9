"""Conversions API reasons (part of the API, see conversions_service.proto)."""

from __future__ import annotations

from server.errors import CircuitOpen, FailedPrecondition


class ConfigNotFound(FailedPrecondition):
    reason = "CONFIG_NOT_FOUND"


class BatchInFlight(CircuitOpen):
    """Another worker is sending this tenant's backlog right now. Raised by a `capi_event`
    job so the worker postpones it briefly without spending an attempt (as for an open
    circuit); by then its event was in that batch or is next in line."""

    reason = "CAPI_BATCH_IN_FLIGHT"


class TokenParked(CircuitOpen):
    """The tenant's CAPI token is revoked or expired. Raised by a `capi_event` job so the
    worker postpones it without spending an attempt; saving a new token releases it
    (server/conversions/parking.py)."""

    reason = "CAPI_TOKEN_PARKED"
