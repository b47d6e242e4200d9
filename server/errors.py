"""The domain error tree. Servicers raise these; one interceptor maps them to gRPC statuses.

    DomainError
    ├── InvalidArgument            INVALID_ARGUMENT  (+ BadRequest field violations)
    ├── Unauthenticated            UNAUTHENTICATED
    ├── PermissionDenied           PERMISSION_DENIED
    │   └── PermissionNotGranted   member lacks an admin grant
    ├── NotFound                   NOT_FOUND
    │   └── ConnectionNotFound
    ├── AlreadyExists              ALREADY_EXISTS
    ├── FailedPrecondition         FAILED_PRECONDITION
    │   ├── TokenExpired           a provider credential must be renewed by its owner
    │   └── PlatformNotConfigured  the super admin has not set the provider's app credentials
    ├── Aborted                    ABORTED (+ RetryInfo): a concurrent attempt holds the slot
    ├── ResourceExhausted          RESOURCE_EXHAUSTED (+ RetryInfo)
    └── Unavailable                UNAVAILABLE (+ RetryInfo)
        ├── ProviderUnavailable
        └── CircuitOpen

`reason` is part of the API (google.rpc.ErrorInfo.reason): stable, UPPER_SNAKE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

DOMAIN = "conexoes.renove.com.br"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = dict(metadata or {})
        self.retry_after = retry_after


class InvalidArgument(DomainError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, message: str, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations = tuple(violations)

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls(f"{field}: {description}", [FieldViolation(field, description)])


class Unauthenticated(DomainError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class PermissionNotGranted(PermissionDenied):
    reason = "PERMISSION_NOT_GRANTED"


class NotFound(DomainError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class ConnectionNotFound(NotFound):
    reason = "CONNECTION_NOT_FOUND"


class AlreadyExists(DomainError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class TokenExpired(FailedPrecondition):
    reason = "TOKEN_EXPIRED"


class PlatformNotConfigured(FailedPrecondition):
    reason = "PLATFORM_NOT_CONFIGURED"


class Aborted(DomainError):
    grpc_code = grpc.StatusCode.ABORTED
    reason = "ABORTED"
    retryable = True


class ResourceExhausted(DomainError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"
    retryable = True


class Unavailable(DomainError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"
    retryable = True


class ProviderUnavailable(Unavailable):
    reason = "PROVIDER_UNAVAILABLE"


class CircuitOpen(Unavailable):
    reason = "CIRCUIT_OPEN"


class Unimplemented(DomainError):
    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    reason = "NOT_IMPLEMENTED_YET"
