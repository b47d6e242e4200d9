"""`conexoes whatsapp ...`: connect (QR in the terminal, live status), status, send, disconnect."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from renove.conexoes.v1 import whatsapp_service_pb2 as wa_pb
from renove.conexoes.v1 import whatsapp_service_pb2_grpc as wa_grpc
from rich.markup import escape

from cli.client import Client
from cli.errors import describe_rpc_error
from cli.render import enum_label, qr_text, when

app = typer.Typer(help="Connect your WhatsApp number (WAHA), follow it, send messages.")

_CONNECTED = wa_pb.WAHA_SESSION_STATUS_CONNECTED
_QR_PENDING = wa_pb.WAHA_SESSION_STATUS_QR_PENDING
_FAILED = wa_pb.WAHA_SESSION_STATUS_FAILED
_DISCONNECTED = wa_pb.WAHA_SESSION_STATUS_DISCONNECTED


def _stub(client: Client) -> wa_grpc.WhatsAppServiceStub:
    return client.stub(wa_grpc.WhatsAppServiceStub)


class _Follower:
    """Prints what changes on the caller's session; shows each new QR once."""

    def __init__(self, client: Client, session_name: str, show_qr: bool) -> None:
        self.client = client
        self.session_name = session_name
        self.show_qr = show_qr
        self.last_status: int | None = None
        self.last_qr: tuple[int, str] | None = None  # (generated at, value) of the QR shown
        self.seen_pending = False

    def update(self, session: wa_pb.WhatsAppSession) -> int | None:
        """Handle one state of the session; returns an exit code when following is over."""
        if self.session_name and session.session_name != self.session_name:
            return None
        if session.status != self.last_status:
            self.last_status = session.status
            label = enum_label(session, "status")
            self.client.console.print(f"status: [bold]{label}[/]")
        if session.status == _QR_PENDING:
            self.seen_pending = True
            if self.show_qr:
                self._maybe_show_qr(session)
        if session.status == _CONNECTED:
            phone = session.phone_number or "?"
            name = f" ({session.phone_name})" if session.phone_name else ""
            self.client.console.print(f"[green]connected[/] as {escape(phone)}{escape(name)}")
            return 0
        if session.status == _FAILED or (session.status == _DISCONNECTED and self.seen_pending):
            reason = enum_label(session, "motivo_desconexao")
            detail = f": {session.ultimo_erro}" if session.ultimo_erro else ""
            self.client.err_console.print(f"[red]not connected[/] ({reason}){escape(detail)}")
            return 1
        return None

    def _maybe_show_qr(self, session: wa_pb.WhatsAppSession) -> None:
        stamp = session.ultimo_qr_gerado.ToNanoseconds()
        if self.last_qr is not None and self.last_qr[0] == stamp:
            return
        reply, error = self.client.try_call(
            _stub(self.client).GetWhatsAppQrCode, wa_pb.GetWhatsAppQrCodeRequest()
        )
        if error is not None:
            # The QR may not exist yet (WAHA still starting): the next update brings it.
            first = describe_rpc_error(error)[0]
            self.client.err_console.print(f"[dim]QR not available yet ({escape(first)})[/]")
            return
        if self.last_qr is not None and self.last_qr[1] == reply.qr_value:
            return
        self.last_qr = (stamp, reply.qr_value)
        console = self.client.console
        if reply.qr_value:
            console.file.write(qr_text(reply.qr_value))
            console.file.flush()
        else:
            console.print(f"QR image (data URL): {reply.qr_code[:80]}...")
        console.print(
            f"Scan it in WhatsApp > Linked devices (expires in {reply.expires_in or 60}s).\n"
            f"[dim]Sandbox: conexoes sandbox scan --session {self.session_name}[/]"
        )


@app.command()
def connect(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 300.0,
    qr: Annotated[bool, typer.Option(help="draw the QR code in the terminal")] = True,
) -> None:
    """Start your session, show the QR here, and follow the status live until connected."""
    client: Client = ctx.obj
    stub = _stub(client)
    started = client.call(
        stub.StartWhatsAppSession,
        wa_pb.StartWhatsAppSessionRequest(request_id=str(uuid.uuid4())),
    )
    client.console.print(
        f"session [bold]{escape(started.session_name)}[/]: {enum_label(started, 'status')}"
        + (f" - {escape(started.message)}" if started.message else "")
    )
    follower = _Follower(client, started.session_name, qr)
    watch = wa_pb.WatchWhatsAppStatusRequest()
    for item in client.stream(stub.WatchWhatsAppStatus, watch, timeout_s=timeout):
        kind = item.WhichOneof("kind")
        sessions = (
            list(item.snapshot.sessions)
            if kind == "snapshot"
            else [item.session]
            if kind == "session"
            else []
        )
        for session in sessions:
            code = follower.update(session)
            if code is not None:
                raise typer.Exit(code)
    client.err_console.print("[red]the status stream ended before the session connected[/]")
    raise typer.Exit(1)


@app.command()
def status(ctx: typer.Context) -> None:
    """Your session's current state (GetWhatsAppStatus)."""
    client: Client = ctx.obj
    session = client.call(_stub(client).GetWhatsAppStatus, wa_pb.GetWhatsAppStatusRequest()).session
    rows = {
        "session": session.session_name or "-",
        "status": enum_label(session, "status"),
        "phone": session.phone_number or "-",
        "name": session.phone_name or "-",
        "connected at": when(session.conectado_em),
        "last QR": when(session.ultimo_qr_gerado),
        "last message": when(session.ultima_mensagem_em),
        "sent/received": f"{session.total_mensagens_enviadas}/{session.total_mensagens_recebidas}",
        "last error": session.ultimo_erro or "-",
    }
    width = max(map(len, rows))
    for key, value in rows.items():
        client.console.print(f"{key:<{width}}  {escape(value)}")


@app.command()
def send(
    ctx: typer.Context,
    to: Annotated[str, typer.Option(help="E.164 number (+5511...) or chat id")],
    text: Annotated[str, typer.Option(help="message text")],
) -> None:
    """Queue a text message from your number (SendWhatsAppMessage)."""
    client: Client = ctx.obj
    request = wa_pb.SendWhatsAppMessageRequest(to=to, text=text, request_id=str(uuid.uuid4()))
    reply = client.call(_stub(client).SendWhatsAppMessage, request)
    message = reply.message
    client.console.print(
        f"message {message.id or '-'} {enum_label(message, 'status')} to {message.chat_id or to}"
        f" (job {reply.job_id or '-'})"
    )


@app.command()
def disconnect(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="admin: disconnect this user's session")] = "",
) -> None:
    """Log the session out of WhatsApp (DisconnectWhatsApp)."""
    client: Client = ctx.obj
    request = wa_pb.DisconnectWhatsAppRequest(usuario_id=user, request_id=str(uuid.uuid4()))
    session = client.call(_stub(client).DisconnectWhatsApp, request).session
    client.console.print(f"session {session.session_name or '-'}: {enum_label(session, 'status')}")
