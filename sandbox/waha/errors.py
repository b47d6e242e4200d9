"""WAHA's error bodies (NestJS style, docs/providers.md, WAHA), raised by the state and
rendered once."""

from __future__ import annotations

from http import HTTPStatus

from sandbox.waha.models import JSON


class WahaHttpError(Exception):
    """An HTTP error with the exact body WAHA would answer."""

    def __init__(self, status: int, body: JSON, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def nest_error(status: int, message: str | list[str]) -> WahaHttpError:
    """`{"statusCode", "message", "error"}`: what NestJS's HttpException subclasses render."""
    return WahaHttpError(
        status, {"statusCode": status, "message": message, "error": HTTPStatus(status).phrase}
    )


def unauthorized() -> WahaHttpError:
    # WAHA's API-key guard answers without an `error` field.
    return WahaHttpError(401, {"message": "Unauthorized", "statusCode": 401})


def session_not_found() -> WahaHttpError:
    """404 from the sessions controller (get/start/stop/...)."""
    return nest_error(404, "Session not found")


def session_param_not_found(name: str) -> WahaHttpError:
    """404 from the endpoints that take the session as a parameter (QR, sendText, me)."""
    return nest_error(
        404,
        f"We didn't find a session with name '{name}'. "
        f"Please start it first by using POST /api/sessions/{name}/start request",
    )


def bad_request(messages: list[str]) -> WahaHttpError:
    """400 from the validation pipe: `message` is a list of strings."""
    return nest_error(400, messages)


def status_not_expected(name: str, status: str, expected: list[str]) -> WahaHttpError:
    """422 from `waitUntilStatus`: NestJS renders the object given to the exception as is."""
    return WahaHttpError(
        422,
        {
            "error": "Session status is not as expected. Try again later or restart the session",
            "session": name,
            "status": status,
            "expected": expected,
        },
    )


def injected(status: int, retry_after: int | None) -> WahaHttpError:
    """A fault injected by the control API (an outage, a proxy, a rate limiter)."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return WahaHttpError(status, {"statusCode": status, "message": phrase}, headers)
