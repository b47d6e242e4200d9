"""The request and response examples of the product spec's endpoint sections, as data.

Transcribed from PRD-08 (sections 1.5, 5.2.7, 6.6 and 7.6: every endpoint section that shows
a JSON example of our API). The spec's other JSON blocks are not our API's: 1.6 and 7.7 are
the providers' webhook payloads (the sidecar forwards them raw to WebhookIngress) and 3.6 is
what we send to Meta's Conversions API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SpecExample:
    section: str
    method: str
    path: str
    request: dict[str, Any] | None  # None: the spec shows no body (a GET)
    status: int
    response: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.section} {self.method} {self.path.removeprefix('/api/v1/conexoes')}"


_INSTAGRAM_SENT = {"message_id": "aWdfZAG1faW..."}

EXAMPLES: tuple[SpecExample, ...] = (
    SpecExample(
        "1.5",
        "POST",
        "/api/v1/conexoes/whatsapp/iniciar",
        {},
        201,
        {
            "id": "uuid",
            "session_name": "wpp-abc123-def456",
            "status": "qr_pending",
            "message": "Sessao criada. Solicite o QR Code para continuar.",
        },
    ),
    SpecExample(
        "1.5",
        "GET",
        "/api/v1/conexoes/whatsapp/qr-code",
        None,
        200,
        {
            "qr_code": "data:image/png;base64,iVBORw0KGgo...",
            "expires_in": 60,
            "status": "qr_pending",
        },
    ),
    SpecExample(
        "1.5",
        "GET",
        "/api/v1/conexoes/whatsapp/status",
        None,
        200,
        {
            "id": "uuid",
            "status": "connected",
            "phone_number": "+5511999999999",
            "phone_name": "Joao Silva",
            "conectado_em": "2026-01-28T14:30:00Z",
            "ultima_mensagem_em": "2026-01-28T16:45:00Z",
        },
    ),
    # The spec shows no status for this one; creating an event answers 201 like every creation.
    SpecExample(
        "5.2.7",
        "POST",
        "/api/v1/conexoes/google/eventos",
        {
            "meeting_id": "uuid",
            "summary": "Reuniao com Joao",
            "description": "Discussao sobre proposta comercial",
            "start": "2026-01-30T14:00:00-03:00",
            "end": "2026-01-30T15:00:00-03:00",
            "attendees": [{"email": "lead@empresa.com"}],
            "add_google_meet": True,
        },
        201,
        {
            "event_id": "abc123xyz",
            "html_link": "https://calendar.google.com/event?eid=abc123",
            "google_meet_link": "https://meet.google.com/abc-defg-hij",
        },
    ),
    SpecExample(
        "6.6",
        "POST",
        "/api/v1/conexoes/email/smtp",
        {
            "email": "usuario@email.com",
            "senha": "senha_ou_app_password",
            "nome_remetente": "Joao Silva",
        },
        201,
        {
            "id": "uuid",
            "tipo": "smtp_manual",
            "email": "usuario@email.com",
            "smtp_host": "smtp.gmail.com",
            "smtp_port": 587,
            "smtp_auto_detected": True,
            "status": "active",
            "message": "Conexao configurada com sucesso.",
        },
    ),
    SpecExample(
        "6.6",
        "POST",
        "/api/v1/conexoes/email/smtp/detectar",
        {"email": "usuario@email.com"},
        200,
        {
            "detected": True,
            "provider": "Gmail",
            "smtp_host": "smtp.gmail.com",
            "smtp_port": 587,
            "smtp_tls": True,
            "requires_app_password": True,
            "help_url": "https://support.google.com/accounts/answer/185833",
        },
    ),
    SpecExample(
        "7.6",
        "POST",
        "/api/v1/conexoes/instagram/mensagens",
        {
            "recipient_id": "IGSID_DO_DESTINATARIO",
            "message": {"text": "Ola! Obrigado pelo contato."},
        },
        200,
        _INSTAGRAM_SENT,
    ),
    # "Enviar imagem": the spec shows the request only; the answer is the same as for text.
    SpecExample(
        "7.6",
        "POST",
        "/api/v1/conexoes/instagram/mensagens",
        {
            "recipient_id": "IGSID_DO_DESTINATARIO",
            "message": {
                "attachment": {
                    "type": "image",
                    "payload": {"url": "https://storage.crm.renove.com/imagem.jpg"},
                }
            },
        },
        200,
        _INSTAGRAM_SENT,
    ),
)
