"""The Instagram hosts the server calls, on one mount (providers.md 6):

GET  /oauth/authorize                 www.instagram.com: the login dialog (approve or deny)
POST /oauth/access_token              api.instagram.com: code -> short-lived token (form)
GET  /access_token                    graph.instagram.com: short -> long-lived (60 days)
GET  /refresh_access_token            graph.instagram.com: refresh (token >= 24 h old)
GET  /{version}/me                    the professional account (`user_id` != `id`)
POST|DELETE /{version}/me/subscribed_apps
POST /{version}/{ig-id}/messages      send (also /me/messages)
GET  /{version}/{igsid}               a customer's profile (only after they wrote)
https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.instagram import errors
from sandbox.instagram.state import InstagramState, Token


def _state(request: Request) -> InstagramState:
    state: InstagramState = request.app.state.instagram
    return state


def _bearer(request: Request) -> Token:
    header = request.headers.get("authorization", "")
    value = header[7:].strip() if header.lower().startswith("bearer ") else ""
    value = value or request.query_params.get("access_token", "")
    if not value:
        raise errors.InstagramError(104, "An access token is required to request this resource.")
    return _state(request).token(value)


async def authorize(request: Request) -> Response:
    state, q = _state(request), request.query_params
    redirect_uri = q.get("redirect_uri", "")
    if q.get("response_type") != "code" or not redirect_uri:
        raise errors.invalid_parameter("response_type=code and redirect_uri are required")
    scopes = set(q.get("scope", "").split(","))
    if "instagram_business_basic" not in scopes:
        raise errors.invalid_parameter("Invalid scope")
    extra = {"state": q["state"]} if q.get("state") else {}
    if state.plan.deny:
        state.plan.deny = False
        query = {
            "error": "access_denied",
            "error_reason": "user_denied",
            "error_description": "The user denied your request.",
            **extra,
        }
        return RedirectResponse(f"{redirect_uri}?{urlencode(query)}", status_code=302)
    code = state.authorize(q.get("client_id", ""), redirect_uri)
    # Instagram appends "#_" to the redirect; clients must strip it from the code.
    location = f"{redirect_uri}?{urlencode({'code': code.value, **extra})}#_"
    return RedirectResponse(location, status_code=302)


async def access_token(request: Request) -> Response:
    # application/x-www-form-urlencoded, read by hand (no multipart parser needed).
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
    try:
        return JSONResponse(_state(request).exchange_code(form))
    except errors.TokenEndpointError as exc:
        return JSONResponse(exc.body(), status_code=400)


async def long_lived(request: Request) -> Response:
    q = request.query_params
    if q.get("grant_type") != "ig_exchange_token":
        raise errors.invalid_parameter("grant_type must be ig_exchange_token")
    answer = _state(request).exchange_long_lived(
        q.get("client_secret", ""), q.get("access_token", "")
    )
    return JSONResponse(answer)


async def refresh(request: Request) -> Response:
    q = request.query_params
    if q.get("grant_type") != "ig_refresh_token":
        raise errors.invalid_parameter("grant_type must be ig_refresh_token")
    return JSONResponse(_state(request).refresh(q.get("access_token", "")))


async def me(request: Request) -> Response:
    token = _bearer(request)
    account = _state(request).accounts[token.account_id]
    wanted = [f for f in request.query_params.get("fields", "").split(",") if f]
    data = account.me()
    if wanted:
        data = {k: v for k, v in data.items() if k in wanted or k == "id"}
    return JSONResponse(data)


async def subscribed_apps(request: Request) -> Response:
    token, state = _bearer(request), _state(request)
    if request.method == "DELETE":
        state.subscriptions.pop(token.account_id, None)
        return JSONResponse({"success": True})
    if request.method == "GET":
        fields = state.subscriptions.get(token.account_id)
        data = [{"subscribed_fields": fields}] if fields else []
        return JSONResponse({"data": data})
    fields = [f for f in request.query_params.get("subscribed_fields", "").split(",") if f]
    if not fields:
        raise errors.invalid_parameter("(#100) subscribed_fields is required")
    state.subscriptions[token.account_id] = fields
    return JSONResponse({"success": True})


async def messages(request: Request) -> Response:
    token, state = _bearer(request), _state(request)
    target = request.path_params["node"]
    if target not in ("me", token.account_id):
        raise errors.InstagramError(
            100, "Unsupported post request: object does not exist or lacks permission"
        )
    try:
        body: Any = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise errors.invalid_parameter("body is not JSON") from exc
    if not isinstance(body, dict):
        raise errors.invalid_parameter("body must be an object")
    return JSONResponse(state.send_message(token.account_id, body))


async def node(request: Request) -> Response:
    token, state = _bearer(request), _state(request)
    igsid = request.path_params["node"]
    customer = state.customers.get(igsid)
    if customer is None or (token.account_id, igsid) not in state.last_customer_message:
        raise errors.InstagramError(
            100, f"Unsupported get request. Object with ID '{igsid}' does not exist"
        )
    return JSONResponse(customer.profile())


async def render_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.InstagramError)
    return JSONResponse(exc.body(), status_code=exc.status)


ROUTES = [
    Route("/oauth/authorize", authorize, methods=["GET"]),
    Route("/oauth/access_token", access_token, methods=["POST"]),
    Route("/access_token", long_lived, methods=["GET"]),
    Route("/refresh_access_token", refresh, methods=["GET"]),
    Route("/{version:str}/me", me, methods=["GET"]),
    Route("/{version:str}/me/subscribed_apps", subscribed_apps, methods=["GET", "POST", "DELETE"]),
    Route("/{version:str}/{node:str}/messages", messages, methods=["POST"]),
    Route("/{version:str}/{node:str}", node, methods=["GET"]),
]
