"""`conexoes`: the command-line client of Renove Conexoes (gRPC), for people and scripts.

Global options pick the server (`--address`, default CONEXOES_GRPC_ADDR or 127.0.0.1:50051) and
the caller (`--token`, default CONEXOES_TOKEN). Every failure prints the gRPC status, the
ErrorInfo reason and field violations, and exits non-zero.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

import typer
from renove.conexoes.v1 import (
    connections_service_pb2 as conn_pb,
)
from renove.conexoes.v1 import (
    connections_service_pb2_grpc as conn_grpc,
)
from renove.conexoes.v1 import (
    email_service_pb2,
    email_service_pb2_grpc,
    google_calendar_service_pb2,
    google_calendar_service_pb2_grpc,
    instagram_service_pb2,
    instagram_service_pb2_grpc,
    meta_leads_service_pb2,
    meta_leads_service_pb2_grpc,
)
from rich.table import Table

from cli import ops, whatsapp
from cli.client import Client, default_address
from cli.render import enum_label, when

app = typer.Typer(
    name="conexoes",
    help="Renove Conexoes from the terminal: tokens, connections, WhatsApp, DLQ, live events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(whatsapp.app, name="whatsapp")
app.add_typer(ops.dlq_app, name="dlq")
app.add_typer(ops.events_app, name="events")
app.add_typer(ops.sandbox_app, name="sandbox")


@app.callback()
def main(
    ctx: typer.Context,
    address: Annotated[
        str,
        typer.Option(help="gRPC server host:port [env CONEXOES_GRPC_ADDR]"),
    ] = "",
    token: Annotated[
        str | None,
        typer.Option(envvar="CONEXOES_TOKEN", help="bearer token (JWT) [env CONEXOES_TOKEN]"),
    ] = None,
    tls: Annotated[bool, typer.Option(help="use TLS (a remote server behind TLS)")] = False,
    timeout: Annotated[float, typer.Option(help="deadline of unary calls, seconds")] = 30.0,
) -> None:
    client = Client(address=address or default_address(), token=token, tls=tls, timeout_s=timeout)
    ctx.obj = client
    ctx.call_on_close(client.close)


class TokenRole(StrEnum):
    admin = "admin"
    member = "member"
    super_admin = "super_admin"


@app.command()
def token(
    role: Annotated[TokenRole, typer.Option(help="role claim")] = TokenRole.admin,
    org: Annotated[
        str | None, typer.Option(help="organizacao_id; default: the demo tenant")
    ] = None,
    sub: Annotated[
        str | None, typer.Option(help="usuario_id; default: the demo tenant's admin/member")
    ] = None,
    hours: Annotated[float, typer.Option(help="lifetime")] = 12.0,
) -> None:
    """Mint a development token (HS256 with CONEXOES_JWT_SECRET, or the development secret)."""
    from server.auth.caller import Role
    from server.auth.tokens import mint_token
    from server.dev import demo_ids
    from server.settings import Settings

    secret = Settings.from_env().effective_jwt_secret
    if secret is None:
        typer.echo("tokens can only be minted with an HS256 secret (CONEXOES_JWT_SECRET)", err=True)
        raise typer.Exit(2)
    demo = demo_ids()
    tenant: str | None = org
    user: str | None = sub
    if role is not TokenRole.super_admin:
        tenant = tenant or demo.organizacao_id
        user = user or (demo.admin_id if role is TokenRole.admin else demo.member_id)
    try:
        tenant_id = uuid.UUID(tenant) if tenant else None
        user_id = uuid.UUID(user) if user else None
    except ValueError as exc:
        typer.echo(f"--org and --sub must be UUIDs: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        mint_token(
            secret,
            role=Role(role.value),
            tenant_id=tenant_id,
            user_id=user_id,
            ttl=timedelta(hours=hours),
        )
    )


@app.command()
def connections(
    ctx: typer.Context,
    tenant: Annotated[bool, typer.Option(help="admin: every user's connections")] = False,
) -> None:
    """The connections overview (GetConnectionsOverview) as a table."""
    client: Client = ctx.obj
    scope = conn_pb.OVERVIEW_SCOPE_TENANT if tenant else conn_pb.OVERVIEW_SCOPE_MINE
    stub = client.stub(conn_grpc.ConnectionsServiceStub)
    reply = client.call(
        stub.GetConnectionsOverview, conn_pb.GetConnectionsOverviewRequest(scope=scope)
    )
    table = Table(title=f"Connections ({'tenant' if tenant else 'mine'})")
    for column in ("connection", "scope", "status", "owner", "account", "since", "allowed"):
        table.add_column(column)
    for item in reply.connections:
        allowed = "yes" if item.permitido else f"no ({item.motivo_bloqueio or '-'})"
        status = enum_label(item, "status")
        if item.requires_reconnect:
            status += " (reconnect)"
        table.add_row(
            enum_label(item, "connection_type"),
            enum_label(item, "scope"),
            status,
            item.owner.nome or item.owner.usuario_id or "-",
            item.account_label or "-",
            when(item.conectado_em),
            allowed,
        )
    client.console.print(table)


class OAuthProvider(StrEnum):
    meta = "meta"
    google = "google"
    gmail = "gmail"
    instagram = "instagram"


# provider -> (stub factory, RPC name, request class): the four Get*AuthUrl RPCs.
_AUTH_URL_RPCS = {
    OAuthProvider.meta: (
        meta_leads_service_pb2_grpc.MetaLeadsServiceStub,
        "GetMetaAuthUrl",
        meta_leads_service_pb2.GetMetaAuthUrlRequest,
    ),
    OAuthProvider.google: (
        google_calendar_service_pb2_grpc.GoogleCalendarServiceStub,
        "GetGoogleAuthUrl",
        google_calendar_service_pb2.GetGoogleAuthUrlRequest,
    ),
    OAuthProvider.gmail: (
        email_service_pb2_grpc.EmailServiceStub,
        "GetGmailAuthUrl",
        email_service_pb2.GetGmailAuthUrlRequest,
    ),
    OAuthProvider.instagram: (
        instagram_service_pb2_grpc.InstagramServiceStub,
        "GetInstagramAuthUrl",
        instagram_service_pb2.GetInstagramAuthUrlRequest,
    ),
}


@app.command("oauth-url")
def oauth_url(
    ctx: typer.Context,
    provider: Annotated[OAuthProvider, typer.Argument(help="meta, google, gmail or instagram")],
    return_to: Annotated[str, typer.Option(help="frontend path to come back to")] = "",
) -> None:
    """Print the provider's authorization URL (open it in a browser to connect)."""
    client: Client = ctx.obj
    factory, rpc, request_class = _AUTH_URL_RPCS[provider]
    stub = client.stub(factory)
    reply = client.call(getattr(stub, rpc), request_class(return_to=return_to))
    oauth = reply.oauth
    typer.echo(oauth.auth_url)
    client.err_console.print(
        f"[dim]redirect_uri {oauth.redirect_uri}  scopes {' '.join(oauth.scopes) or '-'}  "
        f"state expires {when(oauth.expires_at)}[/]"
    )


if __name__ == "__main__":
    app()
