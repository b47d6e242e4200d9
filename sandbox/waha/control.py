"""Control endpoints under `/_control` (not WAHA's; no API key): the phone's side and the
test's eye. Errors use the same NestJS body as the API so one renderer serves both.
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.waha import errors
from sandbox.waha.api import read_json_body
from sandbox.waha.faults import Fault
from sandbox.waha.models import FAILED, JSON, SCAN_QR_CODE, STOPPED, Session
from sandbox.waha.state import Contact, WahaState


def _state(request: Request) -> WahaState:
    state: WahaState = request.app.state.waha
    return state


def _opt_str(body: JSON, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise errors.bad_request([f"{key} must be a string"])
    return value


def _req_str(body: JSON, key: str) -> str:
    value = _opt_str(body, key)
    if not value:
        raise errors.bad_request([f"{key} must be a non-empty string"])
    return value


def _int(body: JSON, key: str, default: int | None = None) -> int:
    value: Any = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise errors.bad_request([f"{key} must be an integer"])
    return value


def _session_view(session: Session) -> JSON:
    """Everything about a session, secrets of the phone included (QR, pairing code)."""
    return {
        "name": session.name,
        "status": session.status,
        "statuses": [{"status": s, "timestamp": t} for s, t in session.statuses],
        "config": session.config,
        "account": session.account.to_json() if session.account else None,
        "authBroken": session.auth_broken,
        "qrValue": session.qr_value,
        "qrRotations": session.qr_rotations,
        "pairingCode": session.pairing_code,
    }


async def reset(request: Request) -> Response:
    await _state(request).reset()
    return JSONResponse({"ok": True})


async def list_sessions(request: Request) -> Response:
    return JSONResponse([_session_view(s) for s in _state(request).sessions.values()])


async def scan(request: Request) -> Response:
    body = await read_json_body(request)
    session = _state(request).scan(
        request.path_params["session"],
        phone=_opt_str(body, "phone"),
        push_name=_opt_str(body, "pushName"),
        value=_opt_str(body, "value"),
        code=_opt_str(body, "code"),
        via_starting=bool(body.get("viaStarting", False)),
    )
    return JSONResponse(_session_view(session))


async def rotate_qr(request: Request) -> Response:
    session = _state(request).rotate_qr(request.path_params["session"])
    return JSONResponse(_session_view(session))


async def inbound(request: Request) -> Response:
    body = await read_json_body(request)
    message = _state(request).receive(
        request.path_params["session"],
        sender=_req_str(body, "from"),
        body=_req_str(body, "body"),
        push_name=_opt_str(body, "pushName"),
        key=_opt_str(body, "id"),
        sender_pn=_opt_str(body, "senderPn"),
        media=_media(body.get("media")),
        base_url=str(request.base_url).rstrip("/"),
    )
    return JSONResponse(message.to_json())


def _media(value: Any) -> tuple[str, str, bytes] | None:
    """`{"mimetype", "filename", "data": base64}` of a media message, or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.bad_request(["media must be an object"])
    try:
        content = base64.b64decode(str(value.get("data") or ""), validate=True)
    except ValueError as exc:
        raise errors.bad_request(["media.data must be base64"]) from exc
    return (
        str(value.get("mimetype") or "application/octet-stream"),
        str(value.get("filename") or "file"),
        content,
    )


async def phone_send(request: Request) -> Response:
    body = await read_json_body(request)
    message = _state(request).phone_send(
        request.path_params["session"],
        to=_req_str(body, "to"),
        body=_req_str(body, "body"),
        key=_opt_str(body, "id"),
    )
    return JSONResponse(message.to_json())


async def ack(request: Request) -> Response:
    body = await read_json_body(request)
    level = _int(body, "ack")
    if level not in range(-1, 5):
        raise errors.bad_request(["ack must be one of -1, 0, 1, 2, 3, 4"])
    message = _state(request).ack(request.path_params["session"], _req_str(body, "id"), level)
    return JSONResponse(message.ack_json())


async def unlink(request: Request) -> Response:
    """The phone logs the device out: `as` SCAN_QR_CODE (WAHA restarts into a new QR) or
    FAILED (the auth is gone: a restart gives a new QR)."""
    body = await read_json_body(request)
    state, name = _state(request), request.path_params["session"]
    shown = body.get("as", SCAN_QR_CODE)
    if shown == SCAN_QR_CODE:
        session = state.unlink_from_phone(name)
    elif shown == FAILED:
        session = state.drop(name, FAILED, "lost")
    else:
        raise errors.bad_request(["as must be SCAN_QR_CODE or FAILED"])
    return JSONResponse(_session_view(session))


async def drop(request: Request) -> Response:
    body = await read_json_body(request)
    status = body.get("status", FAILED)
    auth = body.get("auth", "keep")
    if status not in (FAILED, STOPPED):
        raise errors.bad_request(["status must be FAILED or STOPPED"])
    if auth not in ("keep", "lost", "broken"):
        raise errors.bad_request(["auth must be keep, lost or broken"])
    session = _state(request).drop(request.path_params["session"], status, auth)
    return JSONResponse(_session_view(session))


async def add_fault(request: Request) -> Response:
    body = await read_json_body(request)
    status = _int(body, "status")
    if not 400 <= status <= 599:
        raise errors.bad_request(["status must be an HTTP error status"])
    retry_after = body.get("retryAfter")
    if retry_after is not None:
        retry_after = _int(body, "retryAfter")
    fault = Fault(
        status=status,
        remaining=_int(body, "count", 1),
        retry_after=retry_after,
        path=_opt_str(body, "path") or "/api/",
    )
    _state(request).faults.faults.append(fault)
    return JSONResponse(fault.to_json())


async def list_faults(request: Request) -> Response:
    plan = _state(request).faults
    return JSONResponse(
        {"faults": [f.to_json() for f in plan.faults], "latencyMs": plan.latency_ms}
    )


async def clear_faults(request: Request) -> Response:
    plan = _state(request).faults
    plan.faults.clear()
    plan.latency_ms = 0
    return JSONResponse({"ok": True})


async def set_latency(request: Request) -> Response:
    body = await read_json_body(request)
    _state(request).faults.latency_ms = max(0, _int(body, "ms"))
    return JSONResponse({"latencyMs": _state(request).faults.latency_ms})


async def set_contact(request: Request) -> Response:
    body = await read_json_body(request)
    digits = "".join(ch for ch in _req_str(body, "phone") if ch.isdigit())
    contact = Contact(
        exists=bool(body.get("exists", True)),
        chat_id=_opt_str(body, "chatId") or f"{digits}@c.us",
    )
    _state(request).contacts[digits] = contact
    return JSONResponse({"phone": digits, "exists": contact.exists, "chatId": contact.chat_id})


async def list_seen(request: Request) -> Response:
    return JSONResponse(_state(request).seen)


async def list_messages(request: Request) -> Response:
    query = request.query_params
    rows = [
        {"session": m.session, "message": m.to_json(), "arrived": m.arrived, "repeats": m.repeats}
        for m in _state(request).messages
        if query.get("session", m.session) == m.session
        and query.get("source", m.source) == m.source
    ]
    return JSONResponse(rows)


async def list_webhooks(request: Request) -> Response:
    query = request.query_params
    rows = [
        d.to_json()
        for d in _state(request).dispatcher.deliveries
        if query.get("session", d.session) == d.session and query.get("event", d.event) == d.event
    ]
    return JSONResponse(rows)


async def drain_webhooks(request: Request) -> Response:
    body = await read_json_body(request)
    timeout = body.get("timeout", 10)
    if not isinstance(timeout, int | float):
        raise errors.bad_request(["timeout must be a number"])
    drained = await _state(request).dispatcher.drain(float(timeout))
    return JSONResponse({"drained": drained})


async def list_requests(request: Request) -> Response:
    return JSONResponse(_state(request).faults.requests)


def _on_session(action: str, endpoint: Any) -> Route:
    return Route(f"/_control/sessions/{{session}}/{action}", endpoint, methods=["POST"])


ROUTES = [
    Route("/_control/reset", reset, methods=["POST"]),
    Route("/_control/sessions", list_sessions, methods=["GET"]),
    _on_session("scan", scan),
    _on_session("rotate-qr", rotate_qr),
    _on_session("inbound", inbound),
    _on_session("phone-send", phone_send),
    _on_session("ack", ack),
    _on_session("drop", drop),
    _on_session("unlink", unlink),
    Route("/_control/faults", add_fault, methods=["POST"]),
    Route("/_control/faults", list_faults, methods=["GET"]),
    Route("/_control/faults", clear_faults, methods=["DELETE"]),
    Route("/_control/latency", set_latency, methods=["POST"]),
    Route("/_control/contacts", set_contact, methods=["POST"]),
    Route("/_control/messages", list_messages, methods=["GET"]),
    Route("/_control/seen", list_seen, methods=["GET"]),
    Route("/_control/webhooks", list_webhooks, methods=["GET"]),
    Route("/_control/webhooks/drain", drain_webhooks, methods=["POST"]),
    Route("/_control/requests", list_requests, methods=["GET"]),
]
