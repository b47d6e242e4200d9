"""Control endpoints under `/_control` (not Instagram's; no token): the customer's side.

POST /_control/reset                      fresh world (one seeded professional account)
GET|POST /_control/app                    app id/secret, webhook URL, flat token answer
POST /_control/dialog                     next login: {"deny": true} or {"account_id"}
POST /_control/accounts                   another professional account
POST /_control/customers                  customers who wrote to an account, their DMs delivered
                                          elsewhere (`igsids`): their profiles can be read
POST /_control/dm                         a customer sends a DM (text, attachments, story
                                          mention; `timestamp_ms` to back-date it;
                                          `bad_signature`)
POST /_control/app-message                the business types a reply in the Instagram app
POST /_control/read | /_control/reaction  the customer reads / reacts to a message
POST /_control/clock                      move the fake's clock forward (`advance_seconds`)
POST /_control/tokens/revoke              the account's tokens die (190, subcode 460 or given)
GET  /_control/sent                       messages businesses sent through the API
GET  /_control/webhooks, POST .../drain   deliveries and their attempts
POST /_control/webhooks/{id}/resend       the same delivery again (a duplicate)
GET  /_control/world                      accounts, subscriptions, tokens' ages
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.instagram import errors
from sandbox.instagram.state import InstagramState
from sandbox.instagram.webhooks import JSON, Delivery


def _state(request: Request) -> InstagramState:
    state: InstagramState = request.app.state.instagram
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


def _account(state: InstagramState, body: JSON) -> str:
    account_id = str(body.get("account_id") or state.plan.account_id)
    if account_id not in state.accounts:
        raise errors.invalid_parameter(f"unknown account {account_id}")
    return account_id


def _delivery(delivery: Delivery | None) -> JSON | None:
    return delivery.to_json() if delivery else None


async def reset(request: Request) -> Response:
    _state(request).reset()
    return JSONResponse({"ok": True})


async def app_config(request: Request) -> Response:
    state = _state(request)
    if request.method == "POST":
        body = await _body(request)
        state.app_id = str(body.get("app_id") or state.app_id)
        state.app_secret = str(body.get("app_secret") or state.app_secret)
        state.webhook_url = str(body.get("webhook_url", state.webhook_url))
        state.flat_token_answer = bool(body.get("flat_token_answer", state.flat_token_answer))
    return JSONResponse(
        {
            "app_id": state.app_id,
            "webhook_url": state.webhook_url,
            "flat_token_answer": state.flat_token_answer,
        }
    )


async def dialog(request: Request) -> Response:
    state, body = _state(request), await _body(request)
    state.plan.deny = bool(body.get("deny", False))
    if body.get("account_id"):
        state.plan.account_id = _account(state, body)
    return JSONResponse({"deny": state.plan.deny, "account_id": state.plan.account_id})


async def accounts(request: Request) -> Response:
    body = await _body(request)
    account = _state(request).add_account(
        str(body.get("username") or "outra_conta"),
        str(body.get("name") or "Outra Conta"),
        str(body.get("account_type") or "BUSINESS"),
    )
    return JSONResponse(account.me())


def _message(body: JSON) -> JSON:
    message: dict[str, Any] = {}
    if body.get("text"):
        message["text"] = str(body["text"])
    attachments = body.get("attachments")
    if body.get("story_mention_url"):
        attachments = [{"type": "story_mention", "payload": {"url": body["story_mention_url"]}}]
    if attachments:
        if not isinstance(attachments, list):
            raise errors.invalid_parameter("attachments must be a list")
        message["attachments"] = attachments
    if not message:
        raise errors.invalid_parameter("give text, attachments or story_mention_url")
    return message


async def dm(request: Request) -> Response:
    state, body = _state(request), await _body(request)
    account_id = _account(state, body)
    customer = state.customer(
        str(body.get("sender_id") or ""),
        str(body.get("name") or ""),
        str(body.get("username") or ""),
    )
    at_ms = int(body.get("timestamp_ms") or state.now() * 1000)
    mid, delivery = state.customer_writes(
        account_id, customer, _message(body), at_ms=at_ms, bad=bool(body.get("bad_signature"))
    )
    return JSONResponse(
        {
            "mid": mid,
            "sender_id": customer.igsid,
            "account_id": account_id,
            "delivery": _delivery(delivery),
        }
    )


async def customers(request: Request) -> Response:
    state, body = _state(request), await _body(request)
    account_id = _account(state, body)
    at = state.now()
    known = []
    for igsid in body.get("igsids") or []:
        customer = state.customer(str(igsid))
        # Instagram serves a profile only to a business the user has messaged.
        state.last_customer_message[(account_id, customer.igsid)] = at
        known.append(customer.igsid)
    return JSONResponse({"igsids": known})


async def app_message(request: Request) -> Response:
    state, body = _state(request), await _body(request)
    account_id = _account(state, body)
    mid, delivery = state.business_app_writes(
        account_id, str(body.get("recipient_id") or ""), str(body.get("text") or "")
    )
    return JSONResponse({"mid": mid, "delivery": _delivery(delivery)})


async def read(request: Request) -> Response:
    state, body = _state(request), await _body(request)
    account_id = _account(state, body)
    delivery = state.other_event(
        account_id, str(body.get("sender_id") or ""), "read", {"mid": str(body.get("mid") or "")}
    )
    return JSONResponse({"delivery": _delivery(delivery)})


async def reaction(request: Request) -> Response:
    state, body = _state(request), await _body(request)
    account_id = _account(state, body)
    value = {
        "mid": str(body.get("mid") or ""),
        "action": str(body.get("action") or "react"),
        "reaction": str(body.get("reaction") or "love"),
        "emoji": str(body.get("emoji") or "\u2764"),
    }
    delivery = state.other_event(account_id, str(body.get("sender_id") or ""), "reaction", value)
    return JSONResponse({"delivery": _delivery(delivery)})


async def clock(request: Request) -> Response:
    state, body = _state(request), await _body(request)
    state.offset += float(body.get("advance_seconds") or 0)
    return JSONResponse({"now": state.now()})


async def revoke(request: Request) -> Response:
    state, body = _state(request), await _body(request)
    killed = state.kill_tokens(_account(state, body), int(body.get("subcode") or 460))
    return JSONResponse({"tokens": killed})


async def sent(request: Request) -> Response:
    return JSONResponse(_state(request).sent)


async def webhooks(request: Request) -> Response:
    return JSONResponse([d.to_json() for d in _state(request).dispatcher.deliveries])


async def drain(request: Request) -> Response:
    dispatcher = _state(request).dispatcher
    await dispatcher.drain()
    return JSONResponse([d.to_json() for d in dispatcher.deliveries])


async def resend(request: Request) -> Response:
    again = _state(request).dispatcher.resend(int(request.path_params["delivery_id"]))
    if again is None:
        raise errors.invalid_parameter("unknown delivery")
    return JSONResponse(again.to_json())


async def world(request: Request) -> Response:
    state = _state(request)
    return JSONResponse(
        {
            "accounts": [a.me() for a in state.accounts.values()],
            "subscriptions": state.subscriptions,
            "tokens": [
                {
                    "account_id": t.account_id,
                    "long_lived": t.long_lived,
                    "age_seconds": state.now() - t.issued_at,
                    "dead": t.dead_subcode is not None,
                }
                for t in state.tokens.values()
            ],
        }
    )


ROUTES = [
    Route("/_control/reset", reset, methods=["POST"]),
    Route("/_control/app", app_config, methods=["GET", "POST"]),
    Route("/_control/dialog", dialog, methods=["POST"]),
    Route("/_control/accounts", accounts, methods=["POST"]),
    Route("/_control/dm", dm, methods=["POST"]),
    Route("/_control/customers", customers, methods=["POST"]),
    Route("/_control/app-message", app_message, methods=["POST"]),
    Route("/_control/read", read, methods=["POST"]),
    Route("/_control/reaction", reaction, methods=["POST"]),
    Route("/_control/clock", clock, methods=["POST"]),
    Route("/_control/tokens/revoke", revoke, methods=["POST"]),
    Route("/_control/sent", sent, methods=["GET"]),
    Route("/_control/webhooks", webhooks, methods=["GET"]),
    Route("/_control/webhooks/drain", drain, methods=["POST"]),
    Route("/_control/webhooks/{delivery_id:int}/resend", resend, methods=["POST"]),
    Route("/_control/world", world, methods=["GET"]),
]
