"""Graph API error bodies (docs/providers.md, Meta Graph), raised by the state and rendered once.

https://developers.facebook.com/docs/graph-api/guides/error-handling
"""

from __future__ import annotations

import secrets
from typing import Any


class GraphError(Exception):
    """An error answer with the exact envelope Graph uses."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: int = 400,
        subcode: int | None = None,
        type: str = "OAuthException",
        transient: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"({code}) {message}")
        self.code = code
        self.message = message
        self.status = status
        self.subcode = subcode
        self.type = type
        self.transient = transient
        self.headers = headers or {}
        # Graph's `error_user_msg`: the reason a person can act on (which event, which field).
        self.user_msg: str | None = None

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.transient is not None:
            error["is_transient"] = self.transient
        if self.user_msg:
            error["error_user_msg"] = self.user_msg
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(8)
        return {"error": error}


def token_required() -> GraphError:
    return GraphError(104, "An access token is required to request this resource.")


def invalid_token() -> GraphError:
    return GraphError(190, "Invalid OAuth access token - Cannot parse access token")


def expired_token(subcode: int, detail: str) -> GraphError:
    # 463 expired, 460 password changed, 458 app not installed (revoked), 467 invalid session.
    return GraphError(190, f"Error validating access token: {detail}", subcode=subcode)


def page_token_required() -> GraphError:
    return GraphError(190, "(#190) This method must be called with a Page Access Token")


def unknown_object(object_id: str) -> GraphError:
    return GraphError(
        100,
        f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation.",
        subcode=33,
        type="GraphMethodException",
    )


def missing_permission(permission: str) -> GraphError:
    return GraphError(200, f"(#200) Requires {permission} permission to manage the object")


def invalid_parameter(message: str, subcode: int | None = None) -> GraphError:
    return GraphError(100, message, subcode=subcode)


RATE_LIMITS: dict[int, str] = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
}


def rate_limited(code: int = 4) -> GraphError:
    usage = '{"call_count":100,"total_cputime":30,"total_time":40}'
    return GraphError(code, RATE_LIMITS.get(code, RATE_LIMITS[4]), headers={"x-app-usage": usage})


def server_error(status: int = 500) -> GraphError:
    # Graph's "unknown error" is code 1 (2 = service temporarily unavailable), marked transient.
    code = 2 if status == 503 else 1
    message = "Service temporarily unavailable" if code == 2 else "An unknown error has occurred."
    return GraphError(code, message, status=status, transient=True)
