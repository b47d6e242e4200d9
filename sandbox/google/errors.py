"""Google's error bodies: the API shape and the OAuth token-endpoint shape."""

from __future__ import annotations

from starlette.responses import JSONResponse


def api_error(status: int, reason: str, message: str) -> JSONResponse:
    body = {
        "error": {
            "errors": [{"domain": "global", "reason": reason, "message": message}],
            "code": status,
            "message": message,
        }
    }
    return JSONResponse(body, status_code=status)


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)
