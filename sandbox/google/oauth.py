"""accounts.google.com consent screen and oauth2.googleapis.com token/revoke endpoints, plus
the userinfo endpoint (shared/providers.md section 7 as the fake's reference)."""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.google.errors import api_error, oauth_error
from sandbox.google.state import Code, GoogleState, Grant, Pending

CODE_TTL = 600.0
TESTING_REFRESH_TTL = 604799


def _state(request: Request) -> GoogleState:
    state: GoogleState = request.app.state.google
    return state


async def consent_screen(request: Request) -> Response:
    state, q = _state(request), request.query_params
    missing = [p for p in ("client_id", "redirect_uri", "response_type", "scope") if not q.get(p)]
    if missing or q.get("response_type") != "code":
        return HTMLResponse(f"400. Erro: invalid_request ({', '.join(missing)})", 400)
    if q["client_id"] != state.settings.client_id:
        return HTMLResponse("401. Erro: invalid_client", 401)
    method = q.get("code_challenge_method")
    if q.get("code_challenge") and method != "S256":
        return HTMLResponse("400. Erro: invalid_request (code_challenge_method)", 400)
    pending_id = secrets.token_urlsafe(12)
    state.pending[pending_id] = Pending(
        client_id=q["client_id"],
        redirect_uri=q["redirect_uri"],
        scopes=tuple(q["scope"].split()),
        state=q.get("state", ""),
        challenge=q.get("code_challenge"),
        account=state.account,
    )
    base = str(request.url_for("google_approve")) + f"?id={pending_id}"
    deny = str(request.url_for("google_deny")) + f"?id={pending_id}"
    who = html.escape(state.account.email)
    scopes = "".join(f"<li>{html.escape(s)}</li>" for s in q["scope"].split())
    page = (
        f"<html><body><h1>Renove quer acessar sua Conta do Google</h1><p>{who}</p>"
        f"<ul>{scopes}</ul><a id='approve' href='{base}'>Permitir</a> "
        f"<a id='deny' href='{deny}'>Cancelar</a></body></html>"
    )
    return HTMLResponse(page)


def _back(pending: Pending, **params: str) -> RedirectResponse:
    if pending.state:
        params["state"] = pending.state
    sep = "&" if "?" in pending.redirect_uri else "?"
    return RedirectResponse(f"{pending.redirect_uri}{sep}{urlencode(params)}", status_code=302)


async def approve(request: Request) -> Response:
    """The user clicks "Permitir"; `scope` narrows the grant (granular consent)."""
    state = _state(request)
    pending = state.pending.pop(request.query_params.get("id", ""), None)
    if pending is None:
        return HTMLResponse("400. Erro: consent expired", 400)
    narrowed = request.query_params.get("scope")
    if narrowed:
        pending.scopes = tuple(s for s in pending.scopes if s in narrowed.split())
    code = "4/0Ab" + secrets.token_urlsafe(32)
    state.codes[code] = Code(pending, state.clock() + CODE_TTL)
    return _back(pending, code=code, scope=" ".join(_long(pending.scopes)))


async def deny(request: Request) -> Response:
    state = _state(request)
    pending = state.pending.pop(request.query_params.get("id", ""), None)
    if pending is None:
        return HTMLResponse("400. Erro: consent expired", 400)
    return _back(pending, error="access_denied")


_LONG = {
    "email": "https://www.googleapis.com/auth/userinfo.email",
    "profile": "https://www.googleapis.com/auth/userinfo.profile",
}


def _long(scopes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_LONG.get(s, s) for s in scopes)


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


async def token(request: Request) -> Response:
    state = _state(request)
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return oauth_error(400, "invalid_request", "form body required")
    f = await _form(request)
    state.calls.append(("POST", "/token", {"grant_type": f.get("grant_type", "")}))
    if state.token_failures:
        status = state.token_failures.pop(0)
        return api_error(status, "backendError", "Backend Error")
    if f.get("client_id") != state.settings.client_id or (
        f.get("client_secret") != state.settings.client_secret
    ):
        return oauth_error(401, "invalid_client", "The OAuth client was not found.")
    grant_type = f.get("grant_type")
    if grant_type == "authorization_code":
        return _exchange(state, f)
    if grant_type == "refresh_token":
        grant_id = state.refresh.get(f.get("refresh_token", ""))
        grant = state.grants.get(grant_id or "")
        if grant is None or grant.revoked or _expired_testing(state, grant):
            return oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        grant.refreshes += 1
        assert grant_id is not None
        return JSONResponse(state.issue_tokens(grant_id))
    return oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")


def _expired_testing(state: GoogleState, grant: Grant) -> bool:
    return state.settings.testing_mode and state.clock() - grant.created_at > TESTING_REFRESH_TTL


def _exchange(state: GoogleState, f: dict[str, str]) -> Response:
    code = state.codes.get(f.get("code", ""))
    if code is None or code.used or code.expires_at <= state.clock():
        return oauth_error(400, "invalid_grant", "Malformed auth code.")
    code.used = True  # single use, even when the rest fails
    if f.get("redirect_uri") != code.pending.redirect_uri:
        return oauth_error(400, "redirect_uri_mismatch", "Bad Request")
    challenge = code.pending.challenge
    if challenge is not None and _challenge(f.get("code_verifier", "")) != challenge:
        return oauth_error(400, "invalid_grant", "Invalid code verifier.")
    grant_id = secrets.token_urlsafe(8)
    refresh = "1//0g" + secrets.token_urlsafe(32)
    scopes = _long(code.pending.scopes)
    state.grants[grant_id] = Grant(code.pending.account, scopes, refresh, state.clock())
    state.refresh[refresh] = grant_id
    body = state.issue_tokens(grant_id)
    body["refresh_token"] = refresh
    if state.settings.testing_mode:
        body["refresh_token_expires_in"] = TESTING_REFRESH_TTL
    if "openid" in scopes:
        body["id_token"] = "eyJhbGciOiJSUzI1NiJ9.sandbox.signature"
    return JSONResponse(body)


async def revoke(request: Request) -> Response:
    state = _state(request)
    form = await _form(request)
    value = form.get("token") or request.query_params.get("token") or ""
    grant_id = state.refresh.get(value) or (state.access.get(value) or ("", 0.0))[0]
    grant = state.grants.get(grant_id)
    if grant is None or grant.revoked:
        return oauth_error(400, "invalid_token", "Token expired or revoked")
    grant.revoked = True
    return Response(status_code=200)


async def _form(request: Request) -> dict[str, str]:
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))


def bearer_grant(request: Request) -> Grant | None:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer "):
        return None
    return _state(request).grant_of_access(auth.removeprefix("Bearer "))


async def userinfo(request: Request) -> Response:
    grant = bearer_grant(request)
    if grant is None:
        return api_error(401, "authError", "Invalid Credentials")
    a = grant.account
    first, _, last = a.name.partition(" ")
    return JSONResponse(
        {
            "id": a.id,
            "email": a.email,
            "verified_email": True,
            "name": a.name,
            "given_name": first,
            "family_name": last,
            "locale": "pt-BR",
        }
    )


ROUTES = [
    Route("/o/oauth2/v2/auth", consent_screen, methods=["GET"]),
    Route("/o/oauth2/v2/approve", approve, methods=["GET"], name="google_approve"),
    Route("/o/oauth2/v2/deny", deny, methods=["GET"], name="google_deny"),
    Route("/token", token, methods=["POST"]),
    Route("/revoke", revoke, methods=["POST"]),
    Route("/oauth2/v2/userinfo", userinfo, methods=["GET"]),
]
