"""The whole Lead Ads path on loopback: Graph sandbox (uvicorn) -> sidecar (uvicorn) -> gRPC
server (with its worker) -> PostgreSQL, with the sandbox's leadgen webhooks and the Facebook
Login redirect pointed at the sidecar."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import connections_service_pb2_grpc as cpb_grpc
from renove.conexoes.v1 import meta_leads_service_pb2 as pb
from renove.conexoes.v1 import meta_leads_service_pb2_grpc as pb_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.bootstrap import drop_database, prepare_database
from db.engine import make_engine
from sandbox.app import build_sandbox_app
from sandbox.graph import seed
from sandbox.settings import SandboxSettings
from server.auth.caller import Caller
from tests.conftest import TEST_DATA, MigratedDatabase, PgServer, unique_name
from tests.support.grpc_server import RunningServer, running_server, test_settings
from tests.support.whatsapp_stack import free_port, poll
from webhooks_http.app import SidecarOptions, build_sidecar_app
from webhooks_http.ratelimit import RateLimitOptions
from webhooks_http.runner import serve_in_background

APP_ID = "1234567890123456"
APP_SECRET = "sandbox-meta-app-secret"
VERIFY_TOKEN = "sandbox-verify-token"
FRONTEND = "http://frontend.test"
MAPPED_FIELDS = {
    "full_name": "nome",
    "email": "email",
    "phone_number": "telefone",
    "company_name": "empresa",
    "qual_o_seu_orcamento": "custom:orcamento",
}

QUESTIONS = [
    {"key": "full_name", "label": "Nome completo", "type": "FULL_NAME"},
    {"key": "email", "label": "E-mail", "type": "EMAIL"},
    {"key": "phone_number", "label": "Telefone", "type": "PHONE"},
    {"key": "company_name", "label": "Empresa", "type": "COMPANY_NAME"},
    {"key": "qual_o_seu_orcamento", "label": "Orcamento", "type": "CUSTOM"},
]

__all__ = ["MetaStack", "meta_stack", "poll", "seed"]


@dataclass
class MetaStack:
    graph_url: str  # the sandbox's /graph mount
    sidecar_url: str
    server: RunningServer
    http: httpx.AsyncClient
    # A page and form of this stack's own, so tenants of other tests never share its leads.
    page_id: str = ""
    form_id: str = ""

    @property
    def stub(self) -> pb_grpc.MetaLeadsServiceStub:
        return pb_grpc.MetaLeadsServiceStub(self.server.channel)

    def md(self, caller: Caller) -> tuple[tuple[str, str], ...]:
        return self.server.metadata(caller)

    async def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.http.post(f"{self.graph_url}/_control/{path}", json=body or {})
        response.raise_for_status()
        return response.json()

    async def set_meta_app(self) -> None:
        """The super admin stores the Meta App (ConnectionsService.UpdatePlatformCredentials)."""
        stub = cpb_grpc.ConnectionsServiceStub(self.server.channel)
        await stub.UpdatePlatformCredentials(
            cpb.UpdatePlatformCredentialsRequest(
                provider=cpb.PLATFORM_PROVIDER_META_APP,
                meta_app=cpb.MetaAppCredentialsUpdate(
                    app_id=APP_ID, app_secret=APP_SECRET, verify_token=VERIFY_TOKEN
                ),
            ),
            metadata=self.md(self.server.super_admin()),
        )

    async def authorize(self, caller: Caller, **plan: Any) -> httpx.URL:
        """Admin gets the auth URL, the browser follows the dialog and the sidecar's callback;
        returns where the browser finally lands (the frontend)."""
        if plan:
            await self.control("dialog", plan)
        dialog, cookie = await self.auth_url(caller)
        assert dialog.startswith(self.graph_url)
        answer = await self.http.get(dialog)
        assert answer.status_code == 302
        callback = answer.headers["location"]
        assert callback.startswith(self.sidecar_url)
        landed = await self.http.get(callback, headers={"cookie": cookie})
        assert landed.status_code in (302, 303, 307), landed.text
        return httpx.URL(landed.headers["location"])

    async def auth_url(self, caller: Caller) -> tuple[str, str]:
        """The Facebook Login URL and the binding cookie (`name=value`) the browser receives
        with it (GetMetaAuthUrl's `x-set-cookie` response metadata)."""
        call = self.stub.GetMetaAuthUrl(pb.GetMetaAuthUrlRequest(), metadata=self.md(caller))
        url = await call
        initial = await call.initial_metadata()
        set_cookie = next(str(v) for k, v in initial if k == "x-set-cookie")
        cookie = set_cookie.split(";", 1)[0]
        assert cookie.startswith("renove_oauth_meta_lead_ads="), set_cookie
        return url.oauth.auth_url, cookie

    async def connect(self, caller: Caller, page_id: str = "") -> None:
        landed = await self.authorize(caller)
        assert parse_qs(urlsplit(str(landed)).query)["status"] == ["ok"], landed
        await self.stub.SelectMetaPage(
            pb.SelectMetaPageRequest(page_id=page_id or self.page_id), metadata=self.md(caller)
        )

    async def map_form(
        self,
        caller: Caller,
        funil: uuid.UUID,
        etapa: uuid.UUID,
        *,
        form_id: str = "",
        owner: uuid.UUID | None = None,
        fields: dict[str, str] | None = None,
    ) -> pb.LeadFormMapping:
        response = await self.stub.CreateLeadFormMapping(
            pb.CreateLeadFormMappingRequest(
                mapping=pb.LeadFormMapping(
                    page_id=self.page_id,
                    form_id=form_id or self.form_id,
                    funil_id=str(funil),
                    etapa_destino_id=str(etapa),
                    owner_id=str(owner) if owner else "",
                    mapeamento_campos=MAPPED_FIELDS if fields is None else fields,
                    tags_automaticas=["lead-ads", "facebook"],
                )
            ),
            metadata=self.md(caller),
        )
        return response.mapping

    async def submit(self, answers: dict[str, str], **extra: Any) -> str:
        body = {"form_id": self.form_id, "answers": answers, **extra}
        made = await self.control("leads", body)
        return str(made["leadgen_id"])

    async def drain(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.control("webhooks/drain")
        return result


async def make_pipeline(owner_engine: AsyncEngine, tenant: uuid.UUID) -> tuple[uuid.UUID, ...]:
    """A pipeline with two stages; returns (funil, first stage, second stage)."""
    funil, s1, s2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant)}
        )
        await conn.execute(
            text("INSERT INTO funis (id, organizacao_id, nome) VALUES (:id, :o, 'Vendas')"),
            {"id": funil, "o": tenant},
        )
        for stage, name, order in ((s1, "Novos Leads", 1), (s2, "MQL", 2)):
            await conn.execute(
                text(
                    "INSERT INTO etapas_funil (id, organizacao_id, funil_id, nome, ordem)"
                    " VALUES (:id, :o, :f, :n, :ord)"
                ),
                {"id": stage, "o": tenant, "f": funil, "n": name, "ord": order},
            )
    return funil, s1, s2


@asynccontextmanager
async def meta_stack(owner_url: str, data_dir: str, **overrides: Any) -> AsyncIterator[MetaStack]:
    sandbox_app = build_sandbox_app(SandboxSettings())
    fake = sandbox_app.state.fakes["/graph"]
    # Meta retries for 36 h; here a failed delivery is retried within milliseconds.
    fake.state.dispatcher._retry_delays = lambda: (0.05, 0.2)
    sidecar_port = free_port()
    sidecar_url = f"http://127.0.0.1:{sidecar_port}"
    async with AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(
            serve_in_background(sandbox_app, lifespan="on", http="h11", loop="asyncio")
        )
        graph_url = f"{sandbox.url}/graph"
        settings = test_settings(
            owner_url,
            data_dir,
            meta_graph_url=graph_url,
            meta_oauth_url=graph_url,
            public_url=sidecar_url,
            frontend_url=FRONTEND,
            worker_poll_seconds=0.1,
            **overrides,
        )
        server = await stack.enter_async_context(running_server(settings))
        sidecar_app = build_sidecar_app(
            server.deps.settings,
            server.channel,
            options=SidecarOptions(
                rate_limit=RateLimitOptions(rate_per_second=1000.0, burst=10_000),
                webhook_deadline_s=10.0,
            ),
        )
        await stack.enter_async_context(serve_in_background(sidecar_app, port=sidecar_port))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        await http.post(
            f"{graph_url}/_control/app", json={"webhook_url": f"{sidecar_url}/webhooks/meta-leads"}
        )
        page = (await http.post(f"{graph_url}/_control/pages", json={"name": "Pagina"})).json()
        form = (
            await http.post(
                f"{graph_url}/_control/forms",
                json={"page_id": page["id"], "name": "Captacao", "questions": QUESTIONS},
            )
        ).json()
        try:
            yield MetaStack(graph_url, sidecar_url, server, http, page["id"], form["id"])
        finally:
            # Platform credentials are global: leave none behind for other tests.
            async with server.deps.db.system() as session:
                await session.execute(
                    text("DELETE FROM platform_credentials WHERE provider = 'meta'")
                )


@asynccontextmanager
async def isolated_database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
    """A database of its own: every server of the session runs a queue worker with its own
    provider URLs and keys, and on a shared database any of them may claim our lead jobs."""
    name = unique_name("conexoes_meta")
    owner_url = pg.url_for(name)
    app_url = await prepare_database(owner_url, data_dir=TEST_DATA / "test-secrets")
    try:
        yield MigratedDatabase(name=name, owner_url=owner_url, app_url=app_url)
    finally:
        await drop_database(owner_url)


@asynccontextmanager
async def owner_engine_for(database: MigratedDatabase) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database.owner_url, pool_size=2, max_overflow=2)
    try:
        yield engine
    finally:
        await engine.dispose()
