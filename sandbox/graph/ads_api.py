"""Graph routes of the ads world: `POST /{pixel}/events` (Conversions API), `/me/adaccounts`,
`/act_{id}/customaudiences`, `/{audience}/users`, and reading, renaming and deleting an
audience. Mounted ahead of the generic object routes of `api.py`.

https://developers.facebook.com/docs/marketing-api/conversions-api/using-the-api
https://developers.facebook.com/docs/marketing-api/reference/custom-audience/users/
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.graph import errors
from sandbox.graph.api import _fields, _state, _token, _version, paged
from sandbox.graph.models import JSON

ADS_SCOPE = "ads_management"


async def _params(request: Request) -> dict[str, object]:
    """Graph takes parameters as a JSON body, a form body or the query string alike."""
    out: dict[str, object] = dict(request.query_params)
    if request.method in ("POST", "DELETE"):
        raw = await request.body()
        if raw:
            if request.headers.get("content-type", "").startswith("application/json"):
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise errors.invalid_parameter("(#100) body is not valid JSON") from exc
                if isinstance(body, dict):
                    out.update(body)
            else:
                out.update({k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()})
    return out


async def _ads_user(request: Request) -> None:
    """Ad account and audience calls need a live user token with ads_management."""
    token = _state(request).user_token(await _token(request))
    if ADS_SCOPE not in token.scopes:
        raise errors.missing_permission(ADS_SCOPE)


async def pixel_events(request: Request) -> Response:
    _version(request)
    state = _state(request)
    params = await _params(request)
    data = params.get("data")
    if isinstance(data, str):  # form-encoded: data is a JSON array in a string
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise errors.invalid_parameter("(#100) data must be a JSON array") from exc
    token = params.get("access_token") or await _token(request)
    body = state.ads.receive_events(
        request.path_params["pixel_id"],
        str(token) if token else None,
        data,
        str(params.get("test_event_code") or ""),
        state.now(),
    )
    return JSONResponse(body)


async def ad_accounts(request: Request) -> Response:
    _version(request)
    await _ads_user(request)
    accounts = _state(request).ads.ad_accounts()
    fields = _fields(request)
    if fields:
        accounts = [{k: v for k, v in a.items() if k in fields or k == "id"} for a in accounts]
    return paged(request, accounts)


async def custom_audiences(request: Request) -> Response:
    """`POST` creates a customer list audience; `GET` lists the account's audiences."""
    _version(request)
    await _ads_user(request)
    account = "act_" + request.path_params["account"]
    if request.method == "GET":
        return paged(request, _state(request).ads.account_audiences(account, _fields(request)))
    params = {k: str(v) for k, v in (await _params(request)).items()}
    return JSONResponse(_state(request).ads.create_audience(account, params))


async def audience_users(request: Request) -> Response:
    _version(request)
    await _ads_user(request)
    params = await _params(request)
    payload = params.get("payload")
    session = params.get("session")
    body = _state(request).ads.users(
        request.path_params["audience_id"],
        payload if isinstance(payload, str) else json.dumps(payload or {}),
        "" if session is None else session if isinstance(session, str) else json.dumps(session),
        remove=request.method == "DELETE",
    )
    return JSONResponse(body)


async def audience_read(request: Request, audience_id: str) -> Response:
    """`GET /{audience}?fields=...` (called from the generic object read)."""
    await _ads_user(request)
    body: JSON = _state(request).ads.audience_json(audience_id, _fields(request))
    return JSONResponse(body)


async def audience_write(request: Request) -> Response:
    """`POST /{audience}` renames; `DELETE /{audience}` deletes."""
    _version(request)
    state = _state(request)
    audience_id = request.path_params["audience_id"]
    await _ads_user(request)
    if request.method == "DELETE":
        return JSONResponse(state.ads.delete_audience(audience_id))
    params = {k: str(v) for k, v in (await _params(request)).items()}
    return JSONResponse(state.ads.update_audience(audience_id, params))


ROUTES = [
    Route("/{version}/me/adaccounts", ad_accounts, methods=["GET"]),
    Route("/{version}/act_{account}/customaudiences", custom_audiences, methods=["GET", "POST"]),
    Route("/{version}/{pixel_id}/events", pixel_events, methods=["POST"]),
    Route("/{version}/{audience_id}/users", audience_users, methods=["POST", "DELETE"]),
]
# After api.ROUTES: its object route answers GET only, so writes to an object land here.
TAIL_ROUTES = [
    Route("/{version}/{audience_id}", audience_write, methods=["POST", "DELETE"]),
]
