"""The Instagram fake's world: the app, professional accounts, customers, codes, tokens, the
messaging window, and what was sent (providers.md 6).

Time is the fake's own clock (`now()`): wall time plus an offset that `/_control/clock`
moves, so a test can make a token a day old without waiting a day.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.instagram import errors
from sandbox.instagram.webhooks import JSON, Delivery, WebhookDispatcher, messaging_body

DAY = 24 * 3600
SHORT_TTL = 3600
LONG_TTL = 60 * DAY - 56  # 5183944 s, as in Instagram's sample answer
CODE_TTL = 3600
SCOPES = ("instagram_business_basic", "instagram_business_manage_messages")


@dataclass
class Account:
    user_id: str  # the professional account id: webhooks' entry[].id and recipient.id
    app_scoped_id: str  # `/me`'s `id`: a different number, as on the real API
    username: str
    name: str
    account_type: str = "BUSINESS"
    profile_picture_url: str = ""

    def me(self) -> JSON:
        return {
            "user_id": self.user_id,
            "username": self.username,
            "name": self.name,
            "account_type": self.account_type,
            "profile_picture_url": self.profile_picture_url,
            "id": self.app_scoped_id,
        }


@dataclass
class Customer:
    igsid: str
    name: str
    username: str

    def profile(self) -> JSON:
        return {
            "id": self.igsid,
            "name": self.name,
            "username": self.username,
            "profile_pic": f"https://scontent.sandbox.test/{self.igsid}.jpg",
        }


@dataclass
class Token:
    value: str
    account_id: str
    long_lived: bool
    issued_at: float
    expires_at: float
    dead_subcode: int | None = None  # 190 with this subcode once revoked or expired early


@dataclass
class Code:
    value: str
    account_id: str
    redirect_uri: str
    issued_at: float
    used: bool = False


@dataclass
class DialogPlan:
    deny: bool = False
    account_id: str = ""


@dataclass
class InstagramState:
    app_id: str
    app_secret: str
    webhook_url: str
    dispatcher: WebhookDispatcher
    wall: Callable[[], float] = time.time
    flat_token_answer: bool = False
    offset: float = 0.0
    accounts: dict[str, Account] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    subscriptions: dict[str, list[str]] = field(default_factory=dict)
    # (account, customer) -> the customer's last message time (seconds)
    last_customer_message: dict[tuple[str, str], float] = field(default_factory=dict)
    sent: list[JSON] = field(default_factory=list)
    plan: DialogPlan = field(default_factory=DialogPlan)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.accounts.clear()
        self.customers.clear()
        self.codes.clear()
        self.tokens.clear()
        self.subscriptions.clear()
        self.last_customer_message.clear()
        self.sent.clear()
        self.plan = DialogPlan()
        self.offset = 0.0
        self.dispatcher.reset()
        self.add_account("renove_consultoria", "Renove Consultoria")

    # -- clock and ids ------------------------------------------------------------------------

    def now(self) -> float:
        return self.wall() + self.offset

    def _number(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}{secrets.randbelow(10**6):06d}"

    # -- accounts and customers ---------------------------------------------------------------

    def add_account(self, username: str, name: str, account_type: str = "BUSINESS") -> Account:
        account = Account(
            user_id=self._number("178414"),
            app_scoped_id=self._number("2651"),
            username=username,
            name=name,
            account_type=account_type,
            profile_picture_url=f"https://scontent.sandbox.test/{username}.jpg",
        )
        self.accounts[account.user_id] = account
        if not self.plan.account_id:
            self.plan.account_id = account.user_id
        return account

    def customer(self, igsid: str = "", name: str = "", username: str = "") -> Customer:
        if igsid and igsid in self.customers:
            return self.customers[igsid]
        igsid = igsid or self._number("9")
        made = Customer(igsid, name or f"Cliente {igsid[-4:]}", username or f"cliente_{igsid[-4:]}")
        self.customers[igsid] = made
        return made

    # -- OAuth -----------------------------------------------------------------------------

    def authorize(self, client_id: str, redirect_uri: str) -> Code:
        if client_id != self.app_id:
            raise errors.invalid_parameter("Invalid platform app")
        account_id = self.plan.account_id
        code = Code("AQB" + secrets.token_urlsafe(24), account_id, redirect_uri, self.now())
        self.codes[code.value] = code
        return code

    def exchange_code(self, form: dict[str, str]) -> JSON:
        if form.get("client_id") != self.app_id or form.get("client_secret") != self.app_secret:
            raise errors.TokenEndpointError("Invalid client_id or client_secret")
        if form.get("grant_type") != "authorization_code":
            raise errors.TokenEndpointError("Invalid grant_type")
        code = self.codes.get(form.get("code", ""))
        if code is None or code.used or self.now() - code.issued_at > CODE_TTL:
            raise errors.TokenEndpointError("This authorization code has been used or expired")
        if form.get("redirect_uri") != code.redirect_uri:
            raise errors.TokenEndpointError("Error validating verification code redirect_uri")
        code.used = True
        token = self._issue(code.account_id, long_lived=False)
        entry = {
            "access_token": token.value,
            "user_id": code.account_id,
            "permissions": ",".join(SCOPES),
        }
        return entry if self.flat_token_answer else {"data": [entry]}

    def _issue(self, account_id: str, *, long_lived: bool) -> Token:
        now = self.now()
        prefix = "IGAA" if long_lived else "IGQ"
        token = Token(
            prefix + secrets.token_urlsafe(32),
            account_id,
            long_lived,
            now,
            now + (LONG_TTL if long_lived else SHORT_TTL),
        )
        self.tokens[token.value] = token
        return token

    def token(self, value: str) -> Token:
        token = self.tokens.get(value)
        if token is None:
            raise errors.invalid_token()
        if token.dead_subcode is not None:
            raise errors.dead_token(token.dead_subcode, "The session has been invalidated.")
        if self.now() >= token.expires_at:
            raise errors.dead_token(463, "Session has expired.")
        return token

    def exchange_long_lived(self, client_secret: str, short: str) -> JSON:
        if client_secret != self.app_secret:
            raise errors.invalid_parameter("Error validating client secret.")
        token = self.token(short)
        long = self._issue(token.account_id, long_lived=True)
        return {"access_token": long.value, "token_type": "bearer", "expires_in": LONG_TTL}

    def refresh(self, value: str) -> JSON:
        token = self.token(value)
        if not token.long_lived:
            raise errors.invalid_parameter("Only long-lived tokens can be refreshed.")
        if self.now() - token.issued_at < DAY:
            raise errors.invalid_parameter(
                "The access token must be at least 24 hours old to be refreshed."
            )
        fresh = self._issue(token.account_id, long_lived=True)
        return {
            "access_token": fresh.value,
            "token_type": "bearer",
            "expires_in": LONG_TTL,
            "permissions": ",".join(SCOPES),
        }

    def kill_tokens(self, account_id: str, subcode: int) -> int:
        hit = [t for t in self.tokens.values() if t.account_id == account_id]
        for token in hit:
            token.dead_subcode = subcode
        return len(hit)

    # -- messaging ---------------------------------------------------------------------------

    def send_message(self, account_id: str, body: JSON) -> JSON:
        """`POST /{ig-id}/messages`: the window rule, then an echo webhook as Meta sends one."""
        recipient = body.get("recipient")
        message = body.get("message")
        if not isinstance(recipient, dict) or not recipient.get("id"):
            raise errors.invalid_parameter("(#100) The parameter recipient is required")
        if not isinstance(message, dict) or not (message.get("text") or message.get("attachment")):
            raise errors.invalid_parameter("(#100) The parameter message is required")
        text = message.get("text")
        if isinstance(text, str) and len(text.encode()) > 1000:
            raise errors.invalid_parameter("(#100) Length of param message[text] must be <= 1000")
        igsid = str(recipient["id"])
        last = self.last_customer_message.get((account_id, igsid))
        if last is None:
            raise errors.no_matching_user()
        age = self.now() - last
        human = body.get("messaging_type") == "MESSAGE_TAG" and body.get("tag") == "HUMAN_AGENT"
        if age > 7 * DAY or (age > DAY and not human):
            raise errors.outside_window()
        mid = "aWdfZAG1faW" + secrets.token_urlsafe(18)
        # `arrived` (epoch seconds) is the fake's own: when the send reached Instagram.
        self.sent.append({"account_id": account_id, "mid": mid, **body, "arrived": time.time()})
        echo: JSON = {"mid": mid, "is_echo": True}
        if isinstance(text, str):
            echo["text"] = text
        else:
            attachment = message.get("attachment") or {}
            echo["attachments"] = [
                {"type": attachment.get("type"), "payload": attachment.get("payload") or {}}
            ]
        self.deliver(account_id, self._item(account_id, igsid, echo, from_business=True))
        return {"recipient_id": igsid, "message_id": mid}

    def _item(
        self, account_id: str, igsid: str, message: JSON, *, from_business: bool, at_ms: int = 0
    ) -> JSON:
        at_ms = at_ms or int(self.now() * 1000)
        sender, recipient = (account_id, igsid) if from_business else (igsid, account_id)
        return {
            "sender": {"id": sender},
            "recipient": {"id": recipient},
            "timestamp": at_ms,
            "message": message,
        }

    def customer_writes(
        self, account_id: str, customer: Customer, message: JSON, *, at_ms: int, bad: bool
    ) -> tuple[str, Delivery | None]:
        mid = "aWdfZAG1faW" + secrets.token_urlsafe(18)
        message = {"mid": mid, **message}
        key = (account_id, customer.igsid)
        self.last_customer_message[key] = max(self.last_customer_message.get(key, 0), at_ms / 1000)
        item = self._item(account_id, customer.igsid, message, from_business=False, at_ms=at_ms)
        return mid, self.deliver(account_id, item, bad_signature=bad)

    def business_app_writes(
        self, account_id: str, igsid: str, text: str
    ) -> tuple[str, Delivery | None]:
        """A message typed in the Instagram app: only its echo reaches the webhook."""
        mid = "aWdfZAG1faW" + secrets.token_urlsafe(18)
        item = self._item(
            account_id, igsid, {"mid": mid, "is_echo": True, "text": text}, from_business=True
        )
        return mid, self.deliver(account_id, item)

    def other_event(self, account_id: str, igsid: str, kind: str, value: JSON) -> Delivery | None:
        item: dict[str, Any] = {
            "sender": {"id": igsid},
            "recipient": {"id": account_id},
            "timestamp": int(self.now() * 1000),
            kind: value,
        }
        return self.deliver(account_id, item)

    def deliver(
        self, account_id: str, item: JSON, *, bad_signature: bool = False
    ) -> Delivery | None:
        """Only subscribed accounts get webhooks, as on the real platform."""
        if not self.webhook_url or "messages" not in self.subscriptions.get(account_id, []):
            return None
        body = messaging_body(account_id, [item], int(self.now() * 1000))
        return self.dispatcher.send(
            self.webhook_url, self.app_secret, body, bad_signature=bad_signature
        )
