"""The Graph fake's world and the rules Graph applies to it (docs/providers.md, Meta Lead Ads).

Pages are listed by `/me/accounts` whether or not the person granted them in the dialog; what
was granted shows in `debug_token`'s `granular_scopes[].target_ids`, and reading a page's
forms or leads needs the page there (`leads_retrieval`), as with Meta's granular consent.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlencode

from sandbox.graph import errors
from sandbox.graph.ads import AdsWorld
from sandbox.graph.models import (
    JSON,
    PAGE_SCOPES,
    AuthCode,
    DialogPlan,
    Fault,
    Form,
    Lead,
    Page,
    SandboxUser,
    Token,
    graph_time,
    new_lead_id,
    new_object_id,
    new_token,
)
from sandbox.graph.seed import seed_world
from sandbox.graph.settings import GraphSettings
from sandbox.graph.webhooks import Delivery, WebhookDispatcher

CODE_TTL = 600


class GraphState:
    def __init__(
        self,
        settings: GraphSettings,
        dispatcher: WebhookDispatcher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.clock = clock
        self.rng = random.Random()
        self.reset()

    def reset(self) -> None:
        s = self.settings
        self.app_id, self.app_secret = s.app_id, s.app_secret
        self.verify_token, self.webhook_url = s.verify_token, s.webhook_url
        self.subscribed_success_as_string = s.subscribed_apps_success_as_string
        users, pages, forms = seed_world()
        self.users: dict[str, SandboxUser] = {u.id: u for u in users}
        self.pages: dict[str, Page] = {p.id: p for p in pages}
        self.forms: dict[str, Form] = {f.id: f for f in forms}
        self.leads: dict[str, Lead] = {}
        self.tokens: dict[str, Token] = {}
        self.codes: dict[str, AuthCode] = {}
        self.page_tokens: dict[tuple[str, str], str] = {}
        self.dialog = DialogPlan()
        self.faults: list[Fault] = []
        self.latency_s = 0.0  # every Graph call answers this late (a slow Graph)
        # Users who removed the app by DELETE /me/permissions.
        self.revoked_apps: list[str] = []
        self.requests: list[JSON] = []
        self.ads = AdsWorld(self.rng)
        self.dispatcher.reset()

    def now(self) -> int:
        return int(self.clock())

    # -- Facebook Login ---------------------------------------------------------------------

    def authorize(self, client_id: str, redirect_uri: str, scope: str, state: str) -> str:
        """The dialog's answer: the redirect with a code, or with the user's refusal."""
        if client_id != self.app_id:
            raise errors.invalid_parameter("Invalid App ID: the app_id is not valid")
        if not redirect_uri.startswith(("http://", "https://")):
            raise errors.invalid_parameter("redirect_uri must be an absolute URL", 36008)
        plan, self.dialog = self.dialog, DialogPlan()
        sep = "&" if "?" in redirect_uri else "?"
        if plan.deny:
            query = urlencode(
                {
                    "error": "access_denied",
                    "error_code": "200",
                    "error_description": "Permissions error",
                    "error_reason": "user_denied",
                    "state": state,
                }
            )
            return f"{redirect_uri}{sep}{query}#_=_"
        user = self.users[plan.user_id or next(iter(self.users))]
        scopes = [s for s in scope.replace(" ", ",").split(",") if s]
        scopes = [s for s in scopes if s not in plan.declined_scopes]
        granted = user.page_ids if plan.granted_page_ids is None else plan.granted_page_ids
        code = AuthCode(
            value="AQ" + secrets.token_urlsafe(32),
            user_id=user.id,
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            granted_page_ids=list(granted),
            expires_at=self.now() + CODE_TTL,
        )
        self.codes[code.value] = code
        return f"{redirect_uri}{sep}{urlencode({'code': code.value, 'state': state})}#_=_"

    def _check_client(self, client_id: str, client_secret: str) -> None:
        if client_id != self.app_id:
            raise errors.invalid_parameter("Error validating application. Invalid application ID.")
        if client_secret != self.app_secret:
            # Graph really answers a wrong secret with code 1.
            raise errors.GraphError(1, "Error validating client secret.")

    def exchange_code(
        self, client_id: str, client_secret: str, redirect_uri: str, code: str
    ) -> JSON:
        self._check_client(client_id, client_secret)
        grant = self.codes.get(code)
        if grant is None:
            raise errors.invalid_parameter("Invalid verification code format.", 36007)
        if grant.used or grant.expires_at <= self.now():
            raise errors.invalid_parameter("This authorization code has been used.", 36009)
        if grant.redirect_uri != redirect_uri:
            raise errors.invalid_parameter(
                "Error validating verification code. Please make sure your redirect_uri is "
                "identical to the one you used in the OAuth dialog request",
                36008,
            )
        grant.used = True
        token = self._issue_user_token(
            grant.user_id, grant.scopes, grant.granted_page_ids, long_lived=False
        )
        return _token_json(token, self.now())

    def exchange_long_lived(self, client_id: str, client_secret: str, short: str) -> JSON:
        self._check_client(client_id, client_secret)
        source = self.user_token(short)
        token = self._issue_user_token(
            source.user_id, source.scopes, source.granted_page_ids, long_lived=True
        )
        return _token_json(token, self.now())

    def _issue_user_token(
        self, user_id: str, scopes: list[str], pages: list[str], *, long_lived: bool
    ) -> Token:
        ttl = self.settings.long_token_ttl if long_lived else self.settings.short_token_ttl
        token = Token(
            value=new_token(),
            kind="user",
            user_id=user_id,
            app_id=self.app_id,
            issued_at=self.now(),
            expires_at=self.now() + ttl,
            scopes=scopes,
            granted_page_ids=pages,
            long_lived=long_lived,
        )
        self.tokens[token.value] = token
        return token

    # -- tokens -------------------------------------------------------------------------------

    def _live(self, value: str | None) -> Token:
        if not value:
            raise errors.token_required()
        token = self.tokens.get(value)
        if token is None:
            raise errors.invalid_token()
        if token.dead_subcode is not None:
            raise errors.expired_token(token.dead_subcode, token.dead_detail)
        if token.expires_at and token.expires_at <= self.now():
            raise errors.expired_token(463, "Session has expired.")
        return token

    def user_token(self, value: str | None) -> Token:
        token = self._live(value)
        if token.kind != "user":
            raise errors.invalid_parameter("This method must be called with a User Access Token")
        return token

    def page_token(self, value: str | None, page_id: str) -> Token:
        token = self._live(value)
        if token.kind != "page":
            raise errors.page_token_required()
        if token.page_id != page_id:
            raise errors.missing_permission("pages_read_engagement")
        if "leads_retrieval" not in token.scopes or page_id not in token.granted_page_ids:
            raise errors.missing_permission("leads_retrieval")
        return token

    def is_app_token(self, value: str | None) -> bool:
        return value == f"{self.app_id}|{self.app_secret}"

    def kill_tokens(self, user_id: str, subcode: int, detail: str) -> int:
        """Expire (463/460) or revoke (458) every token of `user_id`, page tokens included."""
        count = 0
        for token in self.tokens.values():
            if token.user_id == user_id and token.dead_subcode is None:
                token.dead_subcode, token.dead_detail = subcode, detail
                count += 1
        return count

    def shorten_tokens(self, user_id: str, seconds: int) -> int:
        """Live user tokens of `user_id` now expire in `seconds` (debug_token's `expires_at`
        shows it; past it, calls fail 190/463 as for any expired token)."""
        count = 0
        for token in self.tokens.values():
            if token.user_id == user_id and token.kind == "user" and token.dead_subcode is None:
                token.expires_at = self.now() + seconds
                count += 1
        return count

    # -- Graph reads --------------------------------------------------------------------------

    def me(self, value: str | None) -> JSON:
        token = self._live(value)
        user = self.users[token.user_id]
        if token.kind == "page":
            page = self.pages[token.page_id or ""]
            return {"id": page.id, "name": page.name}
        out: JSON = {"id": user.id, "name": user.name}
        if "email" in token.scopes:
            out["email"] = user.email
        return out

    def revoke_app(self, value: str | None) -> JSON:
        token = self.user_token(value)
        self.revoked_apps.append(token.user_id)
        self.kill_tokens(
            token.user_id,
            458,
            f"User {token.user_id} has not authorized application {self.app_id}.",
        )
        return {"success": True}

    def accounts(self, value: str | None) -> list[JSON]:
        token = self.user_token(value)
        if "pages_show_list" not in token.scopes:
            raise errors.missing_permission("pages_show_list")
        user = self.users[token.user_id]
        out = []
        for page_id in user.page_ids:
            page = self.pages[page_id]
            out.append(
                {
                    "id": page.id,
                    "name": page.name,
                    "category": page.category,
                    "access_token": self._page_token_for(token, page.id),
                    "tasks": list(_TASKS),
                }
            )
        return out

    def _page_token_for(self, user_token: Token, page_id: str) -> str:
        key = (user_token.value, page_id)
        if key not in self.page_tokens:
            token = Token(
                value=new_token(),
                kind="page",
                user_id=user_token.user_id,
                app_id=user_token.app_id,
                issued_at=self.now(),
                # Page tokens from a long-lived user token never expire.
                expires_at=0 if user_token.long_lived else user_token.expires_at,
                scopes=user_token.scopes,
                granted_page_ids=user_token.granted_page_ids,
                page_id=page_id,
            )
            self.tokens[token.value] = token
            self.page_tokens[key] = token.value
        return self.page_tokens[key]

    def debug_token(self, input_token: str, access_token: str | None) -> JSON:
        if not self.is_app_token(access_token):
            self._live(access_token)  # any valid token may inspect, as on Graph
        token = self.tokens.get(input_token)
        if token is None:
            return {
                "data": {
                    "error": {"code": 190, "message": "Invalid OAuth access token."},
                    "is_valid": False,
                    "scopes": [],
                }
            }
        data: JSON = {
            "app_id": token.app_id,
            "type": token.kind.upper(),
            "application": "Renove CRM (sandbox)",
            "data_access_expires_at": token.issued_at + 90 * 24 * 3600,
            "expires_at": token.expires_at,
            "is_valid": True,
            "issued_at": token.issued_at,
            "scopes": token.scopes,
            "granular_scopes": [
                {"scope": scope, "target_ids": list(token.granted_page_ids)}
                if scope in PAGE_SCOPES
                else {"scope": scope}
                for scope in token.scopes
            ],
            "user_id": token.user_id,
        }
        if token.page_id:
            data["profile_id"] = token.page_id
        try:
            self._live(input_token)
        except errors.GraphError as exc:
            data["is_valid"] = False
            data["error"] = {"code": exc.code, "message": exc.message, "subcode": exc.subcode}
        return {"data": data}

    def page(self, page_id: str) -> Page:
        if page_id not in self.pages:
            raise errors.unknown_object(page_id)
        return self.pages[page_id]

    def leadgen_forms(self, page_id: str, value: str | None) -> list[JSON]:
        page = self.page(page_id)
        self.page_token(value, page_id)
        return [self.form_json(self.forms[f]) for f in page.form_ids]

    def form_json(self, form: Form) -> JSON:
        return {
            "id": form.id,
            "name": form.name,
            "status": form.status,
            "locale": form.locale,
            "created_time": graph_time(form.created_time),
            "leads_count": sum(1 for lead in self.leads.values() if lead.form_id == form.id),
            "questions": [q.to_json() for q in form.questions],
        }

    def subscribe(self, page_id: str, value: str | None, fields: list[str]) -> JSON:
        self.page(page_id)
        token = self._live(value)
        if token.kind != "page" or token.page_id != page_id:
            raise errors.page_token_required()
        if "pages_manage_metadata" not in token.scopes:
            raise errors.missing_permission("pages_manage_metadata")
        if not fields:
            raise errors.invalid_parameter("(#100) The parameter subscribed_fields is required.")
        self.pages[page_id].subscriptions[token.app_id] = fields
        return {"success": "true" if self.subscribed_success_as_string else True}

    def unsubscribe(self, page_id: str, value: str | None) -> JSON:
        token = self._live(value)
        self.page(page_id).subscriptions.pop(token.app_id, None)
        return {"success": True}

    def subscribed_apps(self, page_id: str, value: str | None) -> list[JSON]:
        page = self.page(page_id)
        self.page_token(value, page_id)
        return [
            {"id": app_id, "name": "Renove CRM (sandbox)", "subscribed_fields": fields}
            for app_id, fields in page.subscriptions.items()
        ]

    def lead(self, lead_id: str, value: str | None) -> Lead:
        lead = self.leads.get(lead_id)
        if lead is None:
            self._live(value)
            raise errors.unknown_object(lead_id)
        self.page_token(value, lead.page_id)
        return lead

    def form_leads(self, form_id: str, value: str | None, since: int | None) -> list[Lead]:
        form = self.forms.get(form_id)
        if form is None:
            raise errors.unknown_object(form_id)
        self.page_token(value, form.page_id)
        leads = [
            lead
            for lead in self.leads.values()
            if lead.form_id == form_id and (since is None or lead.created_time > since)
        ]
        return sorted(leads, key=lambda lead: lead.created_time, reverse=True)

    # -- the provider's side (control) --------------------------------------------------------

    def submit_lead(
        self,
        form_id: str,
        answers: dict[str, str],
        *,
        created_time: int | None = None,
        send_webhook: bool = True,
        bad_signature: bool = False,
        ad_id: str | None = None,
    ) -> tuple[Lead, Delivery | None]:
        form = self.forms.get(form_id)
        if form is None:
            raise errors.unknown_object(form_id)
        lead = Lead(
            id=new_lead_id(self.rng),
            form_id=form.id,
            page_id=form.page_id,
            created_time=created_time or self.now(),
            field_data=[{"name": k, "values": [v]} for k, v in answers.items()],
            ad_id=ad_id,
            is_organic=ad_id is None,
        )
        self.leads[lead.id] = lead
        delivery = self.notify([lead], bad_signature=bad_signature) if send_webhook else None
        return lead, delivery

    def notify(self, leads: list[Lead], *, bad_signature: bool = False) -> Delivery | None:
        """Send the leadgen webhook, if the page subscribed this app and a URL is set."""
        subscribed = [
            lead
            for lead in leads
            if "leadgen" in self.pages[lead.page_id].subscriptions.get(self.app_id, [])
        ]
        if not subscribed or not self.webhook_url:
            return None
        return self.dispatcher.send(
            self.webhook_url, self.app_secret, subscribed, self.now(), bad_signature=bad_signature
        )

    def add_page(self, user_id: str, name: str, page_id: str | None = None) -> Page:
        page = Page(page_id or new_object_id(self.rng, 15), name)
        self.pages[page.id] = page
        self.users[user_id].page_ids.append(page.id)
        return page

    def take_fault(self, method: str, path: str) -> tuple[errors.GraphError, float] | None:
        """The error for this request, and how long to hang before answering it."""
        for fault in self.faults:
            if fault.times <= 0 or (fault.method and fault.method != method):
                continue
            if not re.search(fault.pattern, path):
                continue
            if fault.skip > 0:
                fault.skip -= 1
                return None
            fault.times -= 1
            fault.hits += 1
            return _fault_error(fault), fault.hang_s
        return None


_TASKS = ("ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE")


def _token_json(token: Token, now: int) -> JSON:
    return {
        "access_token": token.value,
        "token_type": "bearer",
        "expires_in": max(0, token.expires_at - now),
    }


def _fault_error(fault: Fault) -> errors.GraphError:
    if fault.kind == "rate_limit":
        return errors.rate_limited(fault.code or 4)
    if fault.kind == "token_expired":
        return errors.expired_token(fault.subcode or 463, "Session has expired.")
    if fault.kind == "graph_error":
        return errors.GraphError(
            fault.code or 1,
            "Scripted Graph error",
            status=fault.status or 400,
            subcode=fault.subcode,
        )
    return errors.server_error(fault.status or 500)
