"""Custom Audiences reasons (part of the API, see audiences_service.proto)."""

from __future__ import annotations

import grpc

from server.errors import CircuitOpen, DomainError, FailedPrecondition, NotFound


class AudienceNotFound(NotFound):
    reason = "AUDIENCE_NOT_FOUND"


class AdAccountNotFound(NotFound):
    reason = "AD_ACCOUNT_NOT_FOUND"


class TermsNotAccepted(FailedPrecondition):
    reason = "TERMS_NOT_ACCEPTED"


class AudienceInactive(FailedPrecondition):
    reason = "AUDIENCE_INACTIVE"


class SyncInProgress(DomainError):
    grpc_code = grpc.StatusCode.ABORTED
    reason = "SYNC_IN_PROGRESS"


class SyncBusy(CircuitOpen):
    """Another worker is syncing this audience. Raised by a job so the worker postpones it
    briefly without spending an attempt (as for an open circuit)."""

    reason = "AUDIENCE_SYNC_BUSY"
