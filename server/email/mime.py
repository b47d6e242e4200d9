"""The RFC 5322 message, built with the standard library (`email.message.EmailMessage`).

From carries the sender's display name; the subject and names are encoded as UTF-8 where
needed; a plain and an HTML part are alternatives; attachments make it multipart/mixed;
threads get In-Reply-To and References. Bcc recipients never appear in the headers: SMTP
gets them in the envelope, Gmail in a Bcc header it strips itself (see `with_bcc`).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from server.errors import FieldViolation, InvalidArgument

# Sane addresses only: one @, no spaces, brackets or line breaks (no header injection).
_ADDRESS = re.compile(
    r"^[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
MAX_MESSAGE_BYTES = 20 * 1024 * 1024
_MESSAGE_ID = re.compile(r"^<[^<>\s]+@[^<>\s]+>$")


@dataclass(frozen=True)
class Mailbox:
    email: str
    name: str = ""

    def header(self) -> Address:
        local, _, domain = self.email.rpartition("@")
        return Address(display_name=self.name, username=local, domain=domain)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class Draft:
    sender: Mailbox
    to: Sequence[Mailbox]
    cc: Sequence[Mailbox]
    subject: str
    text: str
    html: str
    attachments: Sequence[Attachment] = ()
    reply_to: Mailbox | None = None
    in_reply_to: str = ""


def valid_address(value: str) -> bool:
    return bool(_ADDRESS.match(value)) and len(value) <= 254


def check_mailbox(email: str, name: str, field: str) -> list[FieldViolation]:
    problems = []
    if not valid_address(email):
        problems.append(FieldViolation(f"{field}.email", "not a valid e-mail address"))
    if "\r" in name or "\n" in name:
        problems.append(FieldViolation(f"{field}.nome", "must be one line"))
    return problems


def check_address(email: str, field: str) -> str:
    email = email.strip()
    if not valid_address(email):
        raise InvalidArgument.field(field, "not a valid e-mail address")
    return email


def check_message_id(value: str, field: str) -> list[FieldViolation]:
    if value and not _MESSAGE_ID.match(value):
        return [FieldViolation(field, "a Message-ID such as <abc@example.com>")]
    return []


def tracking_html(text: str) -> str:
    """An HTML part for a plain-text e-mail whose opens are tracked (a pixel needs HTML)."""
    return f'<div style="white-space:pre-wrap">{html.escape(text)}</div>'


def with_pixel(body: str, pixel_url: str) -> str:
    img = f'<img src="{html.escape(pixel_url)}" width="1" height="1" alt="" style="display:none">'
    closing = body.lower().rfind("</body>")
    if closing == -1:
        return body + img
    return body[:closing] + img + body[closing:]


def build(draft: Draft, *, message_id: str, date: dt.datetime) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = draft.sender.header()
    message["To"] = [m.header() for m in draft.to]
    if draft.cc:
        message["Cc"] = [m.header() for m in draft.cc]
    if draft.reply_to is not None:
        message["Reply-To"] = draft.reply_to.header()
    message["Subject"] = draft.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    if draft.in_reply_to:
        message["In-Reply-To"] = draft.in_reply_to
        message["References"] = draft.in_reply_to
    if draft.text:
        message.set_content(draft.text, charset="utf-8", cte="quoted-printable")
        if draft.html:
            message.add_alternative(
                draft.html, subtype="html", charset="utf-8", cte="quoted-printable"
            )
    else:
        message.set_content(draft.html, subtype="html", charset="utf-8", cte="quoted-printable")
    for item in draft.attachments:
        maintype, _, subtype = item.content_type.partition("/")
        message.add_attachment(
            item.content, maintype=maintype, subtype=subtype, filename=item.filename
        )
    return message


def new_message_id(sender: str) -> str:
    # The sender's domain: make_msgid would otherwise ask the resolver for our FQDN.
    return make_msgid(domain=sender.rpartition("@")[2])


def with_bcc(raw: bytes, bcc: Sequence[str]) -> bytes:
    """The stored message with a Bcc header added (Gmail delivers to it and strips it)."""
    if not bcc:
        return raw
    return b"Bcc: " + ", ".join(bcc).encode() + b"\r\n" + raw


def connection_test_message(address: str, date: dt.datetime) -> bytes:
    """The message "Testar Conexao" sends to the address itself when asked to."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = message["To"] = address
    message["Subject"] = "Teste de conexao SMTP - Renove"
    message["Date"] = format_datetime(date)
    message["Message-ID"] = new_message_id(address)
    message.set_content("Sua conexao SMTP esta funcionando.", cte="quoted-printable")
    return message.as_bytes()
