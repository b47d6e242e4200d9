"""Error answers of the Instagram fake, in the shapes Instagram uses (providers.md 2.3, 6).

The Graph host answers with Graph's envelope; the token endpoint of api.instagram.com with the
older `{"error_type", "code", "error_message"}` shape.
https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/business-login
"""

from __future__ import annotations

import secrets
from typing import Any

# Sending outside the messaging window (code 10); providers.md 6.1.
WINDOW_SUBCODE = 2534022
# The recipient never wrote to the account ("No matching user found").
NO_USER_SUBCODE = 2018001


class InstagramError(Exception):
    """A Graph-envelope error answer."""

    def __init__(
        self, code: int, message: str, *, status: int = 400, subcode: int | None = None
    ) -> None:
        super().__init__(f"({code}) {message}")
        self.code, self.message, self.status, self.subcode = code, message, status, subcode

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(8)
        return {"error": error}


class TokenEndpointError(Exception):
    """An error of `POST api.instagram.com/oauth/access_token`."""

    def __init__(self, message: str, *, code: int = 400) -> None:
        super().__init__(message)
        self.message, self.code = message, code

    def body(self) -> dict[str, Any]:
        return {"error_type": "OAuthException", "code": self.code, "error_message": self.message}


def invalid_parameter(message: str) -> InstagramError:
    return InstagramError(100, message)


def invalid_token() -> InstagramError:
    return InstagramError(190, "Invalid OAuth access token - Cannot parse access token")


def dead_token(subcode: int, detail: str) -> InstagramError:
    # 463 expired, 460 password changed / revoked session, 458 app removed.
    return InstagramError(190, f"Error validating access token: {detail}", subcode=subcode)


def outside_window() -> InstagramError:
    return InstagramError(
        10,
        "(#10) This message is sent outside of allowed window.",
        subcode=WINDOW_SUBCODE,
    )


def no_matching_user() -> InstagramError:
    return InstagramError(100, "No matching user found", subcode=NO_USER_SUBCODE)
