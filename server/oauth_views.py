"""The protobuf side of every OAuth connection's flow: the authorization URL answer (with the
browser-binding cookie handed to the gateway) and the callback's result.

Rooms keep their own flows (server/security/oauth_flow.py and server/google_oauth/); their
servicers turn what the flows return into the contract's shared messages here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import grpc
from renove.conexoes.v1 import resources_pb2

from server.bootstrap import Deps
from server.protoconv import timestamp
from server.security.browser_binding import BrowserBinding
from server.security.oauth_flow import CallbackResult


def secure_cookies(deps: Deps) -> bool:
    """Cookies carry `Secure` when the public URL (where the callback lands) is HTTPS."""
    return deps.settings.public_url.startswith("https://")


async def hand_binding(
    context: grpc.aio.ServicerContext, deps: Deps, binding: BrowserBinding
) -> None:
    """Gives the browser the cookie that binds the state (the gateway makes it Set-Cookie)."""
    await context.send_initial_metadata(binding.metadata(secure=secure_cookies(deps)))


def oauth_url(
    *, url: str, state: str, expires_at: dt.datetime, scopes: Iterable[str], redirect_uri: str
) -> resources_pb2.OAuthUrl:
    return resources_pb2.OAuthUrl(
        auth_url=url,
        state=state,
        expires_at=timestamp(expires_at),
        scopes=list(scopes),
        redirect_uri=redirect_uri,
    )


def callback_result(
    result: CallbackResult, connection_type: resources_pb2.ConnectionType.ValueType
) -> resources_pb2.OAuthCallbackResult:
    return resources_pb2.OAuthCallbackResult(
        sucesso=result.ok,
        redirect_url=result.redirect_url,
        connection_type=connection_type,
        connection_id=result.connection_id,
        motivo_erro=result.reason,
        mensagem=result.message,
        scopes_concedidos=list(result.scopes),
    )
