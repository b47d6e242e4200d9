"""The WAHA API the CRM calls, with WAHA's paths, status codes and shapes (docs/providers.md, WAHA).

Every route here sits behind `ApiGuard`: request log, injected latency and faults, `X-Api-Key`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.waha import errors
from sandbox.waha.models import (
    JSON,
    SCAN_QR_CODE,
    WORKING,
    new_ulid,
    session_dto_json,
    session_info_json,
)
from sandbox.waha.qr import qr_png
from sandbox.waha.state import WahaState

_MAX_NAME = 54  # Mongo's 64-char db-name limit minus the engine prefix.
_PUBLIC_PATHS = frozenset({"/ping"})


def _state(request: Request) -> WahaState:
    state: WahaState = request.app.state.waha
    return state


def _created(body: Any) -> JSONResponse:
    # WAHA (NestJS) answers 201 to every POST, actions included.
    return JSONResponse(body, status_code=201)


async def read_json_body(request: Request) -> JSON:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise errors.bad_request([f"Invalid JSON body: {exc.msg}"]) from exc
    except UnicodeDecodeError as exc:
        raise errors.bad_request(["Invalid JSON body: not UTF-8"]) from exc
    if not isinstance(body, dict):
        raise errors.bad_request(["body must be an object"])
    return body


def _validate_create(body: JSON) -> list[str]:
    problems: list[str] = []
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        problems.append("name must be a string")
    elif isinstance(name, str) and len(name) > _MAX_NAME:
        problems.append(f"name must be shorter than or equal to {_MAX_NAME} characters")
    if "start" in body and not isinstance(body["start"], bool):
        problems.append("start must be a boolean value")
    problems += _validate_config(body.get("config"))
    return problems


def _validate_config(config: Any) -> list[str]:
    if config is None:
        return []
    if not isinstance(config, dict):
        return ["config must be an object"]
    problems: list[str] = []
    metadata = config.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        problems.append("config.metadata must be an object with string values")
    hooks = config.get("webhooks")
    if hooks is None:
        return problems
    if not isinstance(hooks, list):
        return [*problems, "config.webhooks must be an array"]
    for index, hook in enumerate(hooks):
        where = f"config.webhooks.{index}"
        if not isinstance(hook, dict):
            problems.append(f"{where} must be an object")
            continue
        url = hook.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problems.append(f"{where}.url must be a URL address")
        events = hook.get("events")
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            problems.append(f"{where}.events must be an array of strings")
    return problems


async def list_sessions(request: Request) -> Response:
    state = _state(request)
    include_stopped = request.query_params.get("all", "").lower() in ("true", "1")
    sessions = [s for s in state.sessions.values() if include_stopped or s.running]
    return JSONResponse([session_info_json(s, state.settings.engine) for s in sessions])


async def create_session(request: Request) -> Response:
    state = _state(request)
    body = await read_json_body(request)
    problems = _validate_create(body)
    if problems:
        raise errors.bad_request(problems)
    name = body.get("name") or f"session_{new_ulid(state.now_ms())}"
    # The current spec defaults `start` to true; we always send it explicitly anyway.
    session = state.create(name, body.get("config"), bool(body.get("start", True)))
    return _created(session_info_json(session, state.settings.engine))


async def get_session(request: Request) -> Response:
    state = _state(request)
    session = state.get(request.path_params["session"])
    return JSONResponse(session_info_json(session, state.settings.engine))


async def update_session(request: Request) -> Response:
    state = _state(request)
    body = await read_json_body(request)
    problems = _validate_config(body.get("config"))
    if problems:
        raise errors.bad_request(problems)
    session = state.update(request.path_params["session"], body.get("config"))
    return JSONResponse(session_info_json(session, state.settings.engine))


async def delete_session(request: Request) -> Response:
    _state(request).delete(request.path_params["session"])
    return Response(status_code=200)  # WAHA: 200 with an empty body


def _session_action(action: str) -> Route:
    """`POST /api/sessions/{session}/{action}` → 201 `SessionDTO`; 404 if unknown."""

    async def endpoint(request: Request) -> Response:
        state = _state(request)
        operation = getattr(state, action)
        return _created(session_dto_json(operation(request.path_params["session"])))

    return Route(f"/api/sessions/{{session}}/{action}", endpoint, methods=["POST"])


async def get_me(request: Request) -> Response:
    name = request.path_params["session"]
    session = _state(request).sessions.get(name)
    if session is None:
        raise errors.session_param_not_found(name)
    me = session.me
    # NestJS sends an empty body when a handler returns null.
    return JSONResponse(me.to_json()) if me else Response(status_code=200)


async def get_qr(request: Request) -> Response:
    state = _state(request)
    session = await state.wait_status(request.path_params["session"], [SCAN_QR_CODE])
    value = session.qr_value or ""
    if request.query_params.get("format", "image") == "raw":
        return JSONResponse({"value": value})
    png = qr_png(value)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"mimetype": "image/png", "data": base64.b64encode(png).decode()})
    return Response(png, media_type="image/png")


async def request_code(request: Request) -> Response:
    state = _state(request)
    name = request.path_params["session"]
    body = await read_json_body(request)
    phone = body.get("phoneNumber")
    if not isinstance(phone, str) or not phone:
        raise errors.bad_request(["phoneNumber must be a string"])
    session = await state.wait_status(name, [SCAN_QR_CODE])
    return _created({"code": state.request_code(session, phone)})


async def send_text(request: Request) -> Response:
    state = _state(request)
    body = await read_json_body(request)
    problems = [
        f"{key} must be a string"
        for key in ("session", "chatId", "text")
        if not isinstance(body.get(key), str)
    ]
    problems += [
        f"{key} must be a string"
        for key in ("reply_to", "id")
        if body.get(key) is not None and not isinstance(body.get(key), str)
    ]
    if problems:
        raise errors.bad_request(problems)
    session = await state.wait_status(body["session"], [WORKING])
    message = state.send_text(
        session, body["chatId"], body["text"], body.get("reply_to"), body.get("id")
    )
    return _created(message.to_json())


async def send_seen(request: Request) -> Response:
    """POST /api/sendSeen: the chat's messages (all, or `messageIds`) are marked read on the
    phone (https://waha.devlike.pro/docs/how-to/send-messages/#send-seen)."""
    state = _state(request)
    body = await read_json_body(request)
    problems = [
        f"{key} must be a string"
        for key in ("session", "chatId")
        if not isinstance(body.get(key), str)
    ]
    ids = body.get("messageIds")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        problems.append("messageIds must be a list of strings")
    if problems:
        raise errors.bad_request(problems)
    await state.wait_status(body["session"], [WORKING])
    state.seen.append({"session": body["session"], "chatId": body["chatId"], "messageIds": ids})
    return _created({})


async def get_file(request: Request) -> Response:
    """GET /api/files/{session}/{file}: a received message's media (`media.url`)."""
    found = _state(request).files.get(
        (request.path_params["session"], request.path_params["filename"])
    )
    if found is None:
        raise errors.nest_error(404, "File not found")
    mimetype, content = found
    return Response(content, media_type=mimetype)


async def check_exists(request: Request) -> Response:
    state = _state(request)
    phone = request.query_params.get("phone")
    if not phone:
        raise errors.bad_request(["phone must be a string"])
    await state.wait_status(request.query_params.get("session", "default"), [WORKING])
    contact = state.check_exists(phone)
    return JSONResponse(
        {"numberExists": contact.exists, "chatId": contact.chat_id if contact.exists else None}
    )


async def server_version(request: Request) -> Response:
    environment = _state(request).dispatcher.environment()
    return JSONResponse({k: environment[k] for k in ("version", "engine", "tier", "browser")})


async def ping(request: Request) -> Response:
    return JSONResponse({"message": "pong"})


async def render_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.WahaHttpError)
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


async def render_no_route(request: Request, exc: Exception) -> Response:
    """Express/NestJS answer an unknown path or method with 404 `Cannot METHOD /path`."""
    path = _route_path(request.scope)
    return await render_error(request, errors.nest_error(404, f"Cannot {request.method} {path}"))


ROUTES = [
    Route("/ping", ping, methods=["GET"]),
    Route("/api/server/version", server_version, methods=["GET"]),
    Route("/api/sessions", list_sessions, methods=["GET"]),
    Route("/api/sessions", create_session, methods=["POST"]),
    Route("/api/sessions/{session}", get_session, methods=["GET"]),
    Route("/api/sessions/{session}", update_session, methods=["PUT"]),
    Route("/api/sessions/{session}", delete_session, methods=["DELETE"]),
    Route("/api/sessions/{session}/me", get_me, methods=["GET"]),
    *(_session_action(action) for action in ("start", "stop", "restart", "logout")),
    Route("/api/{session}/auth/qr", get_qr, methods=["GET"]),
    Route("/api/{session}/auth/request-code", request_code, methods=["POST"]),
    Route("/api/sendText", send_text, methods=["POST"]),
    Route("/api/sendSeen", send_seen, methods=["POST"]),
    Route("/api/files/{session}/{filename}", get_file, methods=["GET"]),
    Route("/api/contacts/check-exists", check_exists, methods=["GET"]),
]


class ApiGuard:
    """ASGI middleware for the API routes: log, latency, faults, then the API key.

    Faults come before the key check because an outage (a proxy's 503, a crash) answers
    whoever asks. `/_control` paths pass straight through.
    """

    def __init__(self, app: ASGIApp, state: WahaState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = _route_path(scope)
        if scope["type"] != "http" or path.startswith("/_control"):
            await self.app(scope, receive, send)
            return
        entry: JSON = {
            "method": scope["method"],
            "path": path,
            "query": scope.get("query_string", b"").decode(),
            "status": None,
            "at": self.state.now_ms(),
        }
        self.state.faults.requests.append(entry)

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        plan = self.state.faults
        if plan.latency_ms:
            await asyncio.sleep(plan.latency_ms / 1000)
        failure = plan.take(path)
        if failure is None and path not in _PUBLIC_PATHS and not self._authorized(scope):
            failure = errors.unauthorized()
        if failure is not None:
            response = JSONResponse(failure.body, failure.status, headers=failure.headers)
            await response(scope, receive, recording_send)
            return
        await self.app(scope, receive, recording_send)

    def _authorized(self, scope: Scope) -> bool:
        expected = self.state.settings.api_key.encode()
        given = Headers(scope=scope).get("x-api-key")
        if given is None:
            # WAHA's query fallback, meant for WebSocket clients.
            query = Request(scope).query_params
            given = query.get("x-api-key")
        return given is not None and secrets.compare_digest(given.encode(), expected)


def _route_path(scope: Scope) -> str:
    """The path below the mount point (`/waha/api/x` → `/api/x`)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
