"""Super-admin platform credentials RPCs (Meta App, Google App, WAHA, Instagram App, mailer)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import grpc
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2

from server.audit import record_audit
from server.connections.platform_credentials import CATALOG, CredentialView
from server.errors import InvalidArgument
from server.idempotency import answer_in, idempotent
from server.interceptors.context import current_caller
from server.protoconv import timestamp

if TYPE_CHECKING:
    from server.bootstrap import Deps

P = pb.PlatformProvider
PROVIDER_KEYS: dict[pb.PlatformProvider.ValueType, str] = {
    P.PLATFORM_PROVIDER_META_APP: "meta",
    P.PLATFORM_PROVIDER_GOOGLE_APP: "google",
    P.PLATFORM_PROVIDER_WAHA: "waha",
    P.PLATFORM_PROVIDER_INSTAGRAM_APP: "instagram",
    P.PLATFORM_PROVIDER_MAILER: "mailer",
}
# The request's oneof field that must be set for each provider.
SETTINGS_FIELD = {
    "meta": "meta_app",
    "google": "google_app",
    "waha": "waha",
    "instagram": "instagram_app",
    "mailer": "mailer",
}
_GRAPH_VERSION = re.compile(r"^v\d{1,3}\.\d$")


def _provider(value: pb.PlatformProvider.ValueType) -> str:
    if value not in PROVIDER_KEYS:
        raise InvalidArgument.field(
            "provider", "choose META_APP, GOOGLE_APP, WAHA, INSTAGRAM_APP or MAILER"
        )
    return PROVIDER_KEYS[value]


class PlatformRpcs:
    deps: Deps

    async def ListPlatformCredentials(
        self, request: pb.ListPlatformCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPlatformCredentialsResponse:
        async with self.deps.db.unit_of_work(current_caller()) as session:
            views = [await self.deps.platform.view(session, key) for key in PROVIDER_KEYS.values()]
        return pb.ListPlatformCredentialsResponse(credentials=[self._to_proto(v) for v in views])

    async def GetPlatformCredentials(
        self, request: pb.GetPlatformCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPlatformCredentialsResponse:
        provider = _provider(request.provider)
        async with self.deps.db.unit_of_work(current_caller()) as session:
            view = await self.deps.platform.view(session, provider)
        return pb.GetPlatformCredentialsResponse(credentials=self._to_proto(view))

    @idempotent
    async def UpdatePlatformCredentials(
        self, request: pb.UpdatePlatformCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdatePlatformCredentialsResponse:
        caller = current_caller()
        provider = _provider(request.provider)
        changes = _changes(provider, request)
        async with self.deps.db.unit_of_work(caller) as session:
            changed = await self.deps.platform.update(
                session, provider, changes, updated_by=caller.user_id
            )
            await record_audit(
                session,
                caller,
                "platform_credentials.updated",
                entity_type="platform_credentials",
                entity_id=provider,
                details={"fields": changed},
                tenant_id=None,
            )
            view = await self.deps.platform.view(session, provider)
            response = pb.UpdatePlatformCredentialsResponse(credentials=self._to_proto(view))
            await answer_in(session, response)
        return response

    def _to_proto(self, view: CredentialView) -> pb.PlatformCredentials:
        base = self.deps.settings.public_url
        values, secrets = view.values, view.secrets_set
        out = pb.PlatformCredentials(
            provider=next(k for k, v in PROVIDER_KEYS.items() if v == view.provider),
            source=(
                pb.CREDENTIAL_SOURCE_DATABASE
                if view.stored
                else pb.CREDENTIAL_SOURCE_ENVIRONMENT
                if view.from_environment
                else pb.CREDENTIAL_SOURCE_UNSET
            ),
            updated_at=timestamp(view.updated_at),
        )
        if view.updated_by is not None:
            out.updated_by.CopyFrom(resources_pb2.UserRef(usuario_id=str(view.updated_by)))
        if view.provider == "meta":
            out.meta_app.CopyFrom(
                pb.MetaAppCredentials(
                    app_id=values.get("app_id", ""),
                    app_secret_set=secrets["app_secret"],
                    verify_token_set=secrets["verify_token"],
                    graph_api_version=values.get("graph_api_version", ""),
                    oauth_redirect_uri=f"{base}/api/v1/conexoes/meta/callback",
                    webhook_callback_url=f"{base}/webhooks/meta-leads",
                )
            )
        elif view.provider == "google":
            out.google_app.CopyFrom(
                pb.GoogleAppCredentials(
                    client_id=values.get("client_id", ""),
                    client_secret_set=secrets["client_secret"],
                    oauth_redirect_uris=[
                        f"{base}/api/v1/conexoes/google/callback",
                        f"{base}/api/v1/conexoes/email/google/callback",
                    ],
                    webhook_callback_url=f"{base}/webhooks/google-calendar",
                )
            )
        elif view.provider == "waha":
            out.waha.CopyFrom(
                pb.WahaCredentials(
                    base_url=values.get("base_url", ""),
                    api_key_set=secrets["api_key"],
                    webhook_hmac_key_set=secrets["webhook_hmac_key"],
                    webhook_url_template=f"{base}/webhooks/waha/{{tenant_id}}",
                )
            )
        elif view.provider == "mailer":
            port = values.get("port", "")
            emails = values.get("super_admin_emails", "")
            out.mailer.CopyFrom(
                pb.MailerCredentials(
                    host=values.get("host", ""),
                    port=int(port) if port.isdigit() else 0,
                    username=values.get("username", ""),
                    password_set=secrets["password"],
                    from_address=values.get("from_address", ""),
                    super_admin_emails=[e for e in emails.split(",") if e],
                )
            )
        else:
            out.instagram_app.CopyFrom(
                pb.InstagramAppCredentials(
                    app_id=values.get("app_id", ""),
                    app_secret_set=secrets["app_secret"],
                    oauth_redirect_uri=f"{base}/api/v1/conexoes/instagram/callback",
                    webhook_callback_url=f"{base}/webhooks/instagram",
                )
            )
        return out


def _changes(provider: str, request: pb.UpdatePlatformCredentialsRequest) -> dict[str, str]:
    """The fields to store: the update_mask's paths, or every non-empty field without one."""
    expected = SETTINGS_FIELD[provider]
    chosen = request.WhichOneof("settings")
    if chosen != expected:
        raise InvalidArgument.field(
            expected, f"provider '{provider}' takes its settings in '{expected}'"
        )
    settings: Any = getattr(request, expected)
    keys = {f.key for f in CATALOG[provider]}
    if request.HasField("update_mask") and request.update_mask.paths:
        changes: dict[str, str] = {}
        for path in request.update_mask.paths:
            key = path.removeprefix(f"{expected}.")
            if key not in keys:
                raise InvalidArgument.field("update_mask", f"unknown path '{path}'")
            changes[key] = _text(getattr(settings, key))
    else:
        changes = {k: _text(getattr(settings, k)) for k in keys if _text(getattr(settings, k))}
    if not changes:
        raise InvalidArgument.field(expected, "nothing to update")
    _validate(provider, changes)
    return changes


def _text(value: Any) -> str:
    """Credentials are stored as text: a port as digits (0 = none), a list comma-joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value) if value else ""
    return ",".join(str(v).strip() for v in value if str(v).strip())


def _validate(provider: str, changes: dict[str, str]) -> None:
    url = changes.get("base_url")
    if url:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidArgument.field("waha.base_url", "must be an http(s) URL")
    if provider == "mailer":
        _validate_mailer(changes)
    version = changes.get("graph_api_version")
    if version and not _GRAPH_VERSION.match(version):
        raise InvalidArgument.field("meta_app.graph_api_version", "like 'v21.0'")
    for key, value in changes.items():
        # Ids, keys and URLs never contain white space; a pasted newline is a mistake (an
        # SMTP password may hold spaces).
        spaced = key != "password" and any(ch.isspace() for ch in value)
        if len(value) > 2048 or spaced:
            raise InvalidArgument.field(
                f"{SETTINGS_FIELD[provider]}.{key}", "no white space, at most 2048 characters"
            )


_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


def _validate_mailer(changes: dict[str, str]) -> None:
    port = changes.get("port")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise InvalidArgument.field("mailer.port", "a TCP port (587 or 465)")
    sender = changes.get("from_address")
    if sender and not _EMAIL.match(sender):
        raise InvalidArgument.field("mailer.from_address", "an e-mail address")
    for address in (changes.get("super_admin_emails") or "").split(","):
        if address and not _EMAIL.match(address):
            raise InvalidArgument.field("mailer.super_admin_emails", f"not an e-mail: {address}")
