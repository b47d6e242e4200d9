"""Control endpoints of the ads world (Meta's side; no token):

POST /_control/capi/pixels                 a new pixel with its own system-user token
GET  /_control/capi/pixels/{id}/events     events the pixel received (and test events)
POST /_control/capi/pixels/{id}/tokens     another system-user token for the pixel
POST /_control/capi/tokens/revoke          a CAPI token is invalidated (190/458 from then on)
POST /_control/capi/reject                 Meta rejects events with these event_ids
GET  /_control/audiences                   every audience Meta holds (`?name=` filters)
GET  /_control/audiences/{id}              an audience as Meta holds it: members, uploads
                                           (`?additions=1`: each member's upload times)
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.graph import errors
from sandbox.graph.ads import Audience
from sandbox.graph.control import _body, _state
from sandbox.graph.models import JSON


async def new_pixel(request: Request) -> Response:
    pixel = _state(request).ads.new_pixel()
    return JSONResponse({"pixel_id": pixel.id, "access_token": next(iter(pixel.tokens))})


async def pixel_events(request: Request) -> Response:
    pixel = _state(request).ads.pixels.get(request.path_params["pixel_id"])
    if pixel is None:
        raise errors.unknown_object(request.path_params["pixel_id"])
    if request.query_params.get("arrivals_only"):
        return JSONResponse(
            {
                "arrivals": pixel.arrivals,
                "requests": pixel.requests,
                "batch_sizes": pixel.batch_sizes,
            }
        )
    return JSONResponse(
        {
            "events": pixel.events,
            "test_events": pixel.test_events,
            "requests": pixel.requests,
            "arrivals": pixel.arrivals,
        }
    )


async def new_token(request: Request) -> Response:
    pixel = _state(request).ads.pixels.get(request.path_params["pixel_id"])
    if pixel is None:
        raise errors.unknown_object(request.path_params["pixel_id"])
    token = "EAA" + secrets.token_urlsafe(24)
    pixel.tokens.add(token)
    return JSONResponse({"pixel_id": pixel.id, "access_token": token})


async def revoke_token(request: Request) -> Response:
    token = str((await _body(request)).get("access_token") or "")
    if not token:
        raise errors.invalid_parameter("access_token is required")
    _state(request).ads.dead_tokens.add(token)
    return JSONResponse({"ok": True})


async def reject_events(request: Request) -> Response:
    ids = (await _body(request)).get("event_ids") or []
    if not isinstance(ids, list):
        raise errors.invalid_parameter("event_ids must be a list")
    _state(request).ads.reject_event_ids.update(str(i) for i in ids)
    return JSONResponse({"ok": True})


async def audiences(request: Request) -> Response:
    name = request.query_params.get("name")
    found = _state(request).ads.audiences.values()
    return JSONResponse([_audience_json(a) for a in found if name is None or a.name == name])


async def audience(request: Request) -> Response:
    found = _state(request).ads.audiences.get(request.path_params["audience_id"])
    if found is None:
        raise errors.unknown_object(request.path_params["audience_id"])
    body = _audience_json(found)
    if request.query_params.get("additions"):
        body["additions"] = found.added
    return JSONResponse(body)


def _audience_json(found: Audience) -> JSON:
    return {
        "id": found.id,
        "account_id": found.account_id,
        "name": found.name,
        "description": found.description,
        "customer_file_source": found.customer_file_source,
        "members": len(found.members),
        "uploads": found.uploads,
        "sessions": {str(k): v for k, v in found.sessions.items()},
        "deleted": found.deleted,
    }


ROUTES = [
    Route("/_control/capi/pixels", new_pixel, methods=["POST"]),
    Route("/_control/capi/pixels/{pixel_id}/events", pixel_events, methods=["GET"]),
    Route("/_control/capi/pixels/{pixel_id}/tokens", new_token, methods=["POST"]),
    Route("/_control/capi/tokens/revoke", revoke_token, methods=["POST"]),
    Route("/_control/capi/reject", reject_events, methods=["POST"]),
    Route("/_control/audiences", audiences, methods=["GET"]),
    Route("/_control/audiences/{audience_id}", audience, methods=["GET"]),
]
