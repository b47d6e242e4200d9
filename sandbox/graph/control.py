"""Control endpoints under `/_control` (not Graph's; no token): the person's and Meta's side.

POST /_control/reset                       fresh world (seeded user, pages, forms)
GET|POST /_control/app                     app id/secret, verify token, webhook URL
POST /_control/app/verify-webhook          Meta's GET handshake against the webhook URL
POST /_control/dialog                      next login: deny, user, granted pages, declined
POST /_control/leads                       a person submits a form (webhook optional)
POST /_control/leads/{lead_id}/webhook     deliver a lead's webhook again (duplicates)
POST /_control/tokens/expire               a user's tokens expire (190/463, or subcode), or
                                           with `in_seconds`, will expire that soon
POST /_control/revoke                      the user removes the app (190/458)
POST /_control/pages | /_control/forms     more pages and forms
GET|POST|DELETE /_control/faults           Graph errors on cue (5xx, rate limits, 190); `skip`
                                           lets matches through first, `hang_s` answers late
POST /_control/latency                     every Graph call answers `seconds` late (0 = off)
GET /_control/webhooks, POST .../drain     deliveries and their attempts
GET /_control/requests | /_control/world   what was called; pages and subscriptions
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.graph import errors
from sandbox.graph.models import JSON, DialogPlan, Fault, Form, Question, new_object_id
from sandbox.graph.seed import USER_ID
from sandbox.graph.state import GraphState


def _state(request: Request) -> GraphState:
    state: GraphState = request.app.state.graph
    return state


async def _body(request: Request) -> JSON:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise errors.invalid_parameter(f"control body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise errors.invalid_parameter("control body must be an object")
    return body


def _str(body: JSON, key: str, default: str | None = None) -> str | None:
    value: Any = body.get(key, default)
    if value is not None and not isinstance(value, str | int):
        raise errors.invalid_parameter(f"{key} must be a string")
    return None if value is None else str(value)


async def reset(request: Request) -> Response:
    _state(request).reset()
    return JSONResponse({"ok": True})


def _app_view(state: GraphState) -> JSON:
    return {
        "app_id": state.app_id,
        "verify_token": state.verify_token,
        "webhook_url": state.webhook_url,
        "subscribed_apps_success_as_string": state.subscribed_success_as_string,
    }


async def app_config(request: Request) -> Response:
    state = _state(request)
    if request.method == "POST":
        body = await _body(request)
        state.app_id = _str(body, "app_id", state.app_id) or state.app_id
        state.app_secret = _str(body, "app_secret", state.app_secret) or state.app_secret
        state.verify_token = _str(body, "verify_token", state.verify_token) or ""
        state.webhook_url = _str(body, "webhook_url", state.webhook_url) or ""
        flag = body.get("subscribed_apps_success_as_string")
        if isinstance(flag, bool):
            state.subscribed_success_as_string = flag
    return JSONResponse(_app_view(state))


async def verify_webhook(request: Request) -> Response:
    """What Meta does when the callback URL is saved (docs/providers.md, Meta Graph)."""
    state = _state(request)
    body = await _body(request)
    challenge = str(secrets.randbelow(10**10))
    params = {
        "hub.mode": "subscribe",
        "hub.challenge": challenge,
        "hub.verify_token": _str(body, "verify_token", state.verify_token) or "",
    }
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(state.webhook_url, params=params)
    ok = response.status_code == 200 and response.text == challenge
    return JSONResponse({"ok": ok, "status": response.status_code, "body": response.text})


async def dialog_plan(request: Request) -> Response:
    body = await _body(request)
    granted = body.get("granted_page_ids")
    state = _state(request)
    state.dialog = DialogPlan(
        deny=bool(body.get("deny", False)),
        user_id=_str(body, "user_id"),
        granted_page_ids=[str(p) for p in granted] if isinstance(granted, list) else None,
        declined_scopes=[str(s) for s in body.get("declined_scopes") or []],
    )
    return JSONResponse({"ok": True})


async def submit_lead(request: Request) -> Response:
    body = await _body(request)
    answers = body.get("answers") or {}
    if not isinstance(answers, dict):
        raise errors.invalid_parameter("answers must be an object of question key -> value")
    created = body.get("created_time")
    lead, delivery = _state(request).submit_lead(
        _str(body, "form_id") or "",
        {str(k): str(v) for k, v in answers.items()},
        created_time=int(created) if created is not None else None,
        send_webhook=bool(body.get("send_webhook", True)),
        bad_signature=bool(body.get("bad_signature", False)),
        ad_id=_str(body, "ad_id"),
    )
    return JSONResponse(
        {
            "leadgen_id": lead.id,
            "page_id": lead.page_id,
            "form_id": lead.form_id,
            "created_time": lead.created_time,
            "delivery_id": delivery.id if delivery else None,
        }
    )


async def resend_webhook(request: Request) -> Response:
    state = _state(request)
    body = await _body(request)
    lead = state.leads.get(request.path_params["lead_id"])
    if lead is None:
        raise errors.unknown_object(request.path_params["lead_id"])
    delivery = state.notify([lead], bad_signature=bool(body.get("bad_signature", False)))
    return JSONResponse({"delivery_id": delivery.id if delivery else None})


async def expire_tokens(request: Request) -> Response:
    body = await _body(request)
    user_id = _str(body, "user_id", USER_ID) or USER_ID
    if body.get("in_seconds") is not None:
        # Still valid, expiring soon: what an ageing 60-day token looks like to debug_token.
        return JSONResponse(
            {"tokens": _state(request).shorten_tokens(user_id, int(body["in_seconds"]))}
        )
    subcode = int(body.get("subcode") or 463)
    detail = "Session has expired." if subcode == 463 else "The session has been invalidated."
    count = _state(request).kill_tokens(user_id, subcode, detail)
    return JSONResponse({"tokens": count})


async def revoke(request: Request) -> Response:
    body = await _body(request)
    user_id = _str(body, "user_id", USER_ID) or USER_ID
    state = _state(request)
    detail = f"User {user_id} has not authorized application {state.app_id}."
    return JSONResponse({"tokens": state.kill_tokens(user_id, 458, detail)})


async def add_page(request: Request) -> Response:
    body = await _body(request)
    page = _state(request).add_page(
        _str(body, "user_id", USER_ID) or USER_ID,
        _str(body, "name", "Pagina sandbox") or "",
        _str(body, "page_id"),
    )
    return JSONResponse({"id": page.id, "name": page.name})


async def add_form(request: Request) -> Response:
    state = _state(request)
    body = await _body(request)
    page = state.page(_str(body, "page_id") or "")
    questions = [
        Question(
            str(q["key"]),
            str(q.get("label", q["key"])),
            str(q.get("type", "CUSTOM")),
            new_object_id(state.rng, 15),
        )
        for q in body.get("questions") or []
    ]
    form = Form(
        _str(body, "form_id") or new_object_id(state.rng, 15),
        page.id,
        _str(body, "name", "Formulario sandbox") or "",
        questions,
        status=_str(body, "status", "ACTIVE") or "ACTIVE",
        created_time=state.now(),
    )
    state.forms[form.id] = form
    page.form_ids.append(form.id)
    return JSONResponse(state.form_json(form))


async def faults(request: Request) -> Response:
    state = _state(request)
    if request.method == "DELETE":
        state.faults.clear()
    elif request.method == "POST":
        body = await _body(request)
        state.faults.append(
            Fault(
                pattern=_str(body, "pattern", ".") or ".",
                kind=_str(body, "kind", "server_error") or "server_error",
                times=int(body.get("times", 1)),
                method=_str(body, "method"),
                code=body.get("code"),
                status=body.get("status"),
                subcode=body.get("subcode"),
                skip=int(body.get("skip", 0)),
                hang_s=float(body.get("hang_s", 0.0)),
            )
        )
    return JSONResponse(
        [
            {"pattern": f.pattern, "kind": f.kind, "left": f.times, "hits": f.hits}
            for f in state.faults
        ]
    )


async def latency(request: Request) -> Response:
    body = await _body(request)
    seconds = body.get("seconds", 0)
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise errors.invalid_parameter("seconds must be a number >= 0")
    _state(request).latency_s = float(seconds)
    return JSONResponse({"seconds": float(seconds)})


async def webhooks(request: Request) -> Response:
    return JSONResponse([d.to_json() for d in _state(request).dispatcher.deliveries])


async def drain(request: Request) -> Response:
    await _state(request).dispatcher.drain()
    return JSONResponse([d.to_json() for d in _state(request).dispatcher.deliveries])


async def requests_log(request: Request) -> Response:
    return JSONResponse(_state(request).requests)


async def world(request: Request) -> Response:
    state = _state(request)
    return JSONResponse(
        {
            "app": _app_view(state),
            "pages": [
                {"id": p.id, "name": p.name, "forms": p.form_ids, "subscriptions": p.subscriptions}
                for p in state.pages.values()
            ],
            "leads": len(state.leads),
            "revoked_apps": state.revoked_apps,
        }
    )


ROUTES = [
    Route("/_control/reset", reset, methods=["POST"]),
    Route("/_control/app", app_config, methods=["GET", "POST"]),
    Route("/_control/app/verify-webhook", verify_webhook, methods=["POST"]),
    Route("/_control/dialog", dialog_plan, methods=["POST"]),
    Route("/_control/leads", submit_lead, methods=["POST"]),
    Route("/_control/leads/{lead_id}/webhook", resend_webhook, methods=["POST"]),
    Route("/_control/tokens/expire", expire_tokens, methods=["POST"]),
    Route("/_control/revoke", revoke, methods=["POST"]),
    Route("/_control/pages", add_page, methods=["POST"]),
    Route("/_control/forms", add_form, methods=["POST"]),
    Route("/_control/faults", faults, methods=["GET", "POST", "DELETE"]),
    Route("/_control/latency", latency, methods=["POST"]),
    Route("/_control/webhooks", webhooks, methods=["GET"]),
    Route("/_control/webhooks/drain", drain, methods=["POST"]),
    Route("/_control/requests", requests_log, methods=["GET"]),
    Route("/_control/world", world, methods=["GET"]),
]
