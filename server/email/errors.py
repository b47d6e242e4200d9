"""E-mail reasons (part of the API, see email_service.proto)."""

from __future__ import annotations

from server.errors import ConnectionNotFound, FailedPrecondition, NotFound, TokenExpired


class EmailNotConnected(FailedPrecondition):
    reason = ConnectionNotFound.reason


class EmailConnectionBroken(FailedPrecondition):
    """The connection is in `error`: the password was refused; save it again."""

    reason = "CONNECTION_ERROR"


class EmailSenderChanged(FailedPrecondition):
    """A queued e-mail's connection was replaced (another kind or address) before it went:
    it is not sent as someone else; the user writes it again."""

    reason = "EMAIL_SENDER_CHANGED"


class GmailTokenExpired(TokenExpired):
    pass


class SmtpTestFailed(FailedPrecondition):
    """SaveSmtpConfig: the connection test failed, so nothing was saved."""

    reason = "SMTP_TEST_FAILED"


class SmtpAuthRefused(FailedPrecondition):
    reason = "SMTP_AUTH_FAILED"


class EmailNotFound(NotFound):
    reason = "EMAIL_NOT_FOUND"


class ContactNotFound(NotFound):
    reason = "CONTACT_NOT_FOUND"
