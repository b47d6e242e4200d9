"""Operations: the dead-letter queue, the live event stream, and the sandbox's phone side."""

from __future__ import annotations

import os
import uuid
from typing import Annotated

import httpx
import typer
from renove.conexoes.v1 import connections_service_pb2 as conn_pb
from renove.conexoes.v1 import connections_service_pb2_grpc as conn_grpc
from renove.conexoes.v1 import whatsapp_service_pb2 as wa_pb
from renove.conexoes.v1 import whatsapp_service_pb2_grpc as wa_grpc
from rich.markup import escape
from rich.table import Table

from cli.client import Client
from cli.render import as_json, compact_json, enum_label, when

dlq_app = typer.Typer(help="Dead-lettered jobs: list, retry, discard (tenant admins).")
events_app = typer.Typer(help="Live events (WatchEvents).")
sandbox_app = typer.Typer(help="Play the provider's side in the sandbox (make run).")

DEFAULT_SANDBOX_ADDR = "127.0.0.1:8090"


def _connections(client: Client) -> conn_grpc.ConnectionsServiceStub:
    return client.stub(conn_grpc.ConnectionsServiceStub)


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    tipo: Annotated[str, typer.Option(help="only this job type (capi_event, ...)")] = "",
    page_size: Annotated[int, typer.Option(help="rows per page")] = 50,
    page_token: Annotated[str, typer.Option(help="token printed by a previous page")] = "",
) -> None:
    """Jobs that failed for good (ListFailedEvents)."""
    client: Client = ctx.obj
    request = conn_pb.ListFailedEventsRequest(tipo=tipo, page_size=page_size, page_token=page_token)
    reply = client.call(_connections(client).ListFailedEvents, request)
    table = Table(title=f"Dead-lettered jobs ({reply.total_size})")
    for column in ("id", "type", "status", "attempts", "last error", "updated"):
        table.add_column(column)
    for event in reply.events:
        table.add_row(
            event.id,
            event.tipo,
            enum_label(event, "status"),
            f"{event.tentativas}/{event.max_tentativas}",
            escape(event.ultimo_erro[:60]) or "-",
            when(event.atualizado_em),
        )
    client.console.print(table)
    if reply.next_page_token:
        client.console.print(f"next page: --page-token {reply.next_page_token}")


@dlq_app.command("retry")
def dlq_retry(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="eventos_pendentes.id")],
    reset: Annotated[bool, typer.Option(help="a full new retry budget")] = False,
) -> None:
    """Put a dead-lettered job back in the queue (RetryFailedEvent)."""
    client: Client = ctx.obj
    request = conn_pb.RetryFailedEventRequest(
        id=job_id, reset_tentativas=reset, request_id=str(uuid.uuid4())
    )
    event = client.call(_connections(client).RetryFailedEvent, request).event
    client.console.print(f"job {event.id}: {enum_label(event, 'status')}")


@dlq_app.command("discard")
def dlq_discard(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="eventos_pendentes.id")],
    reason: Annotated[str, typer.Option(help="why (kept in the audit log)")] = "",
) -> None:
    """Drop a dead-lettered job for good (DiscardFailedEvent)."""
    client: Client = ctx.obj
    request = conn_pb.DiscardFailedEventRequest(
        id=job_id, motivo=reason, request_id=str(uuid.uuid4())
    )
    event = client.call(_connections(client).DiscardFailedEvent, request).event
    client.console.print(f"job {event.id}: {enum_label(event, 'status')}")


@events_app.command("watch")
def events_watch(
    ctx: typer.Context,
    tenant: Annotated[bool, typer.Option(help="admin: every user's events")] = False,
    heartbeats: Annotated[bool, typer.Option(help="also print keep-alives")] = False,
) -> None:
    """Follow live events, one line each, until Ctrl-C (WatchEvents)."""
    client: Client = ctx.obj
    scope = conn_pb.OVERVIEW_SCOPE_TENANT if tenant else conn_pb.OVERVIEW_SCOPE_MINE
    request = conn_pb.WatchEventsRequest(scope=scope)
    for item in client.stream(_connections(client).WatchEvents, request):
        kind = item.WhichOneof("kind")
        if kind == "event":
            event = item.event
            client.console.print(
                f"{when(event.occurred_at)} {enum_label(event, 'kind')}"
                f" user={event.usuario_id or '-'} {escape(compact_json(as_json(event.payload)))}",
                soft_wrap=True,
            )
        elif kind == "snapshot":
            client.console.print(f"[dim]watching ({compact_json(as_json(item.snapshot))})[/]")
        elif kind == "heartbeat" and heartbeats:
            client.console.print(f"[dim]{when(item.heartbeat.sent_at)} heartbeat[/]")


def _sandbox_url(address: str) -> str:
    address = address or os.environ.get("CONEXOES_SANDBOX_ADDR") or DEFAULT_SANDBOX_ADDR
    return address if "://" in address else f"http://{address}"


@sandbox_app.command("scan")
def sandbox_scan(
    ctx: typer.Context,
    session: Annotated[
        str, typer.Option(help="WAHA session name; default: your own (GetWhatsAppStatus)")
    ] = "",
    phone: Annotated[str, typer.Option(help="the number the phone links")] = "",
    name: Annotated[str, typer.Option(help="the phone's profile name")] = "",
    sandbox: Annotated[
        str, typer.Option(help="sandbox host:port [env CONEXOES_SANDBOX_ADDR, 127.0.0.1:8090]")
    ] = "",
) -> None:
    """Scan the QR code as the phone would, in the sandbox's WAHA fake."""
    client: Client = ctx.obj
    if not session:
        stub = client.stub(wa_grpc.WhatsAppServiceStub)
        reply = client.call(stub.GetWhatsAppStatus, wa_pb.GetWhatsAppStatusRequest())
        session = reply.session.session_name
        if not session:
            client.err_console.print("no session yet: run `conexoes whatsapp connect` first")
            raise typer.Exit(1)
    body: dict[str, str] = {}
    if phone:
        body["phone"] = "".join(ch for ch in phone if ch.isdigit())
    if name:
        body["pushName"] = name
    url = f"{_sandbox_url(sandbox)}/waha/_control/sessions/{session}/scan"
    try:
        response = httpx.post(url, json=body, timeout=10.0)
    except httpx.HTTPError as exc:
        client.err_console.print(f"[red]error[/] cannot reach the sandbox at {url}: {exc}")
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        client.err_console.print(
            f"[red]error[/] sandbox answered {response.status_code}: {escape(response.text)}"
        )
        raise typer.Exit(1)
    view = response.json()
    account = view.get("account") or {}
    client.console.print(
        f"scanned: session {view.get('name')} is {view.get('status')}"
        + (f" as {account.get('id')}" if account else "")
    )
