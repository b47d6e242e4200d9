"""Reasons of the Google OAuth flow (part of the API: they reach the frontend as `motivo`)."""

from __future__ import annotations

from server.errors import FailedPrecondition, FieldViolation, InvalidArgument

MESSAGES = {
    "ACCESS_DENIED": "Voce nao autorizou o acesso a sua conta Google. Tente conectar novamente.",
    "MISSING_SCOPES": "Marque todas as permissoes pedidas na tela do Google para conectar.",
    "STATE_INVALID": "O link de conexao nao e valido. Inicie a conexao novamente.",
    "STATE_EXPIRED": "O link de conexao expirou (10 minutos). Inicie a conexao novamente.",
    "STATE_REUSED": "Este link de conexao ja foi usado. Inicie a conexao novamente.",
    "STATE_BROWSER_MISMATCH": "A conexao foi iniciada em outro navegador. Inicie-a novamente aqui.",
    "CODE_EXCHANGE_FAILED": "Nao foi possivel concluir a conexao com o Google. Tente de novo.",
    "PLATFORM_NOT_CONFIGURED": "O aplicativo Google da plataforma nao esta configurado.",
}


class GooglePlatformNotConfigured(FailedPrecondition):
    reason = "PLATFORM_NOT_CONFIGURED"


class BadGoogleState(InvalidArgument):
    """STATE_INVALID, STATE_EXPIRED, STATE_REUSED or STATE_BROWSER_MISMATCH: the sidecar still
    lands the browser on the frontend, with this reason."""

    def __init__(self, reason: str) -> None:
        message = MESSAGES[reason]
        super().__init__(message, [FieldViolation("state", message)])
        self.reason = reason


class ConsentFailed(Exception):
    """The callback ended without a usable grant (denied, narrower scopes, exchange failed):
    the browser goes back to the frontend with `reason`."""

    def __init__(self, reason: str, return_to: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.return_to = return_to
        self.message = MESSAGES[reason]
