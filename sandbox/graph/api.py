"""Graph API routes the CRM calls, with Graph's paths, shapes and errors
(docs/providers.md, Meta Lead Ads).

Every route sits behind `GraphGuard`: request log (token values left out), injected faults.
https://developers.facebook.com/docs/graph-api/reference
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.graph import errors
from sandbox.graph.models import JSON
from sandbox.graph.state import GraphState

_VERSION = re.compile(r"^v\d{1,3}\.\d$")
_MAX_LIMIT = 100


def _state(request: Request) -> GraphState:
    state: GraphState = request.app.state.graph
    return state


def render_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.GraphError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def render_no_route(request: Request, _: Exception) -> Response:
    err = errors.GraphError(2500, f"Unknown path components: {request.url.path}")
    return JSONResponse(err.body(), status_code=400)


class GraphGuard:
    """Logs each Graph request, waits the injected latency and answers an injected fault
    before the route runs."""

    def __init__(self, app: ASGIApp, state: GraphState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or "/_control/" in path:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        params = dict(request.query_params)
        if "access_token" in params:
            params["access_token"] = "[redacted]"
        self.state.requests.append({"method": request.method, "path": path, "query": params})
        if self.state.latency_s:
            await asyncio.sleep(self.state.latency_s)
        fault = self.state.take_fault(request.method, path)
        if fault is not None:
            error, hang_s = fault
            if hang_s:
                await asyncio.sleep(hang_s)
            await render_error(request, error)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _version(request: Request) -> str:
    version = request.path_params["version"]
    if not _VERSION.match(version):
        raise errors.GraphError(2500, f"Unknown path components: /{version}")
    return str(version)


async def _token(request: Request) -> str | None:
    token = request.query_params.get("access_token")
    if token:
        return token
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return (await _form(request)).get("access_token") or None


async def _form(request: Request) -> dict[str, str]:
    """A POST's urlencoded parameters (Graph takes them in the query or the body alike)."""
    if request.method != "POST":
        return {}
    raw = await request.body()
    return {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()}


async def _param(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if value is None:
        value = (await _form(request)).get(name)
    return value or ""


def _fields(request: Request) -> list[str]:
    return [f for f in request.query_params.get("fields", "").split(",") if f]


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise errors.invalid_parameter("(#100) Invalid cursor") from exc


def paged(request: Request, items: list[Any]) -> JSONResponse:
    """Graph's cursor paging: `data`, `paging.cursors`, and `paging.next` when more remain."""
    state = _state(request)
    try:
        limit = int(request.query_params.get("limit") or state.settings.page_limit)
    except ValueError as exc:
        raise errors.invalid_parameter("(#100) limit must be an integer") from exc
    limit = max(1, min(limit, _MAX_LIMIT))
    start = _offset(request.query_params.get("after"))
    chunk = items[start : start + limit]
    body: JSON = {"data": chunk}
    if items:
        paging: JSON = {"cursors": {"before": _cursor(start), "after": _cursor(start + limit)}}
        if start + limit < len(items):
            params = dict(request.query_params)
            params.update(after=_cursor(start + limit), limit=str(limit))
            paging["next"] = f"{str(request.url).split('?')[0]}?{urlencode(params)}"
        body["paging"] = paging
    return JSONResponse(body)


async def dialog(request: Request) -> Response:
    """Facebook Login dialog: the person approves (or, when told to, denies) at once."""
    _version(request)
    q = request.query_params
    try:
        location = _state(request).authorize(
            q.get("client_id", ""),
            q.get("redirect_uri", ""),
            q.get("scope", ""),
            q.get("state", ""),
        )
    except errors.GraphError as exc:
        # The real dialog shows an error page to the person; nothing goes to the redirect.
        return HTMLResponse(f"<h1>Erro</h1><p>{exc.message}</p>", status_code=400)
    return RedirectResponse(location, status_code=302)


async def access_token(request: Request) -> Response:
    _version(request)
    state = _state(request)
    client_id = await _param(request, "client_id")
    secret = await _param(request, "client_secret")
    if await _param(request, "grant_type") == "fb_exchange_token":
        short = await _param(request, "fb_exchange_token")
        return JSONResponse(state.exchange_long_lived(client_id, secret, short))
    body = state.exchange_code(
        client_id, secret, await _param(request, "redirect_uri"), await _param(request, "code")
    )
    return JSONResponse(body)


async def debug_token(request: Request) -> Response:
    _version(request)
    input_token = request.query_params.get("input_token", "")
    if not input_token:
        raise errors.invalid_parameter("(#100) The parameter input_token is required")
    return JSONResponse(_state(request).debug_token(input_token, await _token(request)))


async def me(request: Request) -> Response:
    _version(request)
    return JSONResponse(_state(request).me(await _token(request)))


async def me_permissions(request: Request) -> Response:
    """DELETE /me/permissions: the person removes the app; every token of theirs dies."""
    _version(request)
    return JSONResponse(_state(request).revoke_app(await _token(request)))


async def me_accounts(request: Request) -> Response:
    _version(request)
    return paged(request, _state(request).accounts(await _token(request)))


async def object_edge(request: Request) -> Response:
    _version(request)
    state = _state(request)
    object_id, edge = request.path_params["object_id"], request.path_params["edge"]
    token = await _token(request)
    if edge == "leadgen_forms" and request.method == "GET":
        return paged(request, state.leadgen_forms(object_id, token))
    if edge == "subscribed_apps":
        if request.method == "POST":
            fields = (await _param(request, "subscribed_fields")).split(",")
            return JSONResponse(state.subscribe(object_id, token, [f for f in fields if f]))
        if request.method == "DELETE":
            return JSONResponse(state.unsubscribe(object_id, token))
        return paged(request, state.subscribed_apps(object_id, token))
    if edge == "leads" and request.method == "GET":
        since = _since(request.query_params.get("filtering"))
        leads = state.form_leads(object_id, token, since)
        return paged(request, [lead.to_json(_fields(request)) for lead in leads])
    raise errors.GraphError(2500, f"Unknown path components: /{edge}")


def _since(filtering: str | None) -> int | None:
    """`filtering=[{"field":"time_created","operator":"GREATER_THAN","value":<unix>}]`."""
    if not filtering:
        return None
    try:
        rules = json.loads(filtering)
        for rule in rules:
            if rule.get("field") == "time_created" and rule.get("operator") == "GREATER_THAN":
                return int(rule["value"])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise errors.invalid_parameter("(#100) filtering must be a JSON array of rules") from exc
    return None


async def get_object(request: Request) -> Response:
    _version(request)
    state = _state(request)
    object_id = request.path_params["object_id"]
    token = await _token(request)
    if object_id in state.leads:
        return JSONResponse(state.lead(object_id, token).to_json(_fields(request)))
    if object_id in state.forms:
        form = state.forms[object_id]
        state.page_token(token, form.page_id)
        return JSONResponse(state.form_json(form))
    if object_id in state.ads.audiences:
        from sandbox.graph.ads_api import audience_read

        return await audience_read(request, object_id)
    if object_id in state.pages:
        page = state.pages[object_id]
        return JSONResponse({"id": page.id, "name": page.name, "category": page.category})
    state.lead(object_id, token)  # raises: token error first, else unknown object
    raise errors.unknown_object(object_id)


ROUTES = [
    Route("/{version}/dialog/oauth", dialog, methods=["GET"]),
    Route("/{version}/oauth/access_token", access_token, methods=["GET", "POST"]),
    Route("/{version}/debug_token", debug_token, methods=["GET"]),
    Route("/{version}/me", me, methods=["GET"]),
    Route("/{version}/me/accounts", me_accounts, methods=["GET"]),
    Route("/{version}/me/permissions", me_permissions, methods=["DELETE"]),
    Route("/{version}/{object_id}/{edge}", object_edge, methods=["GET", "POST", "DELETE"]),
    Route("/{version}/{object_id}", get_object, methods=["GET"]),
]
