"""Secrecy audit over what the suite produced: no token, secret or authorization code in a
response (every gRPC message and error the tests received, every body the sidecar's webhook,
OAuth and JSON gateway routes answered), a log line, an audit entry, an alert, an outbox
(change-feed) event, a queued job or its error, or the stored headers of a webhook; and no raw
e-mail or phone in what was logged as sent to Meta's Conversions API (Meta gets them hashed).

Runs last (this folder sorts after every other), over the session's database and the log
records and responses kept since collection (conftest.py). Run alone it still checks what its
own session produced.
"""

from __future__ import annotations

import contextlib
import re
import uuid

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.ingress_helpers import META_SECRET
from tests.zz_audit.conftest import LOG_LINES, RESPONSES
from tests.zz_audit.detectors import findings

RAW_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+\.[A-Za-z.]{2,}")
RAW_PHONE = re.compile(r"\+?55\s?\(?\d{2}\)?\s?9?\d{4}-?\d{4}")

# table -> the columns read as text (row_to_json of just those).
SCANNED = {
    "audit_log": "*",
    "alerts": "*",
    "outbox_eventos": "*",
    "eventos_pendentes": "payload, ultimo_erro, destino",
    "webhook_inbox": "headers, query",
}


async def _rows(engine: AsyncEngine, table: str, columns: str) -> list[str]:
    """Every row, whichever tenant: one pass per tenant (RLS is forced, the owner may not be a
    superuser), and one as super admin for the rows of no tenant."""
    select = text(f"SELECT row_to_json(t)::text FROM (SELECT {columns} FROM {table}) t")
    out: list[str] = []
    async with engine.connect() as conn:
        tenants = [r[0] for r in await conn.execute(text("SELECT * FROM app_list_tenants()"))]
    async with engine.connect() as conn:
        for tenant in [None, *tenants]:
            async with conn.begin():
                await conn.execute(
                    text(
                        "SELECT set_config('app.current_tenant', :t, true),"
                        " set_config('app.current_role', :r, true)"
                    ),
                    {"t": str(tenant or ""), "r": "service" if tenant else "super_admin"},
                )
                out.extend(r[0] for r in await conn.execute(select))
    return out


async def test_no_secret_in_logs_audit_alerts_outbox_jobs_or_inbox(
    owner_engine: AsyncEngine,
) -> None:
    problems: list[str] = []
    scanned = 0
    for table, columns in SCANNED.items():
        for row in await _rows(owner_engine, table, columns):
            scanned += 1
            problems.extend(findings(f"{table} row {row[:80]}", row))
    for line in LOG_LINES:
        problems.extend(findings(f"log line {line[:100]!r}", line))
    print(f"secrecy scan: {scanned} rows, {len(LOG_LINES)} log lines")
    assert not problems, "\n".join(sorted(set(problems))[:40])


def test_no_secret_in_any_response_the_suite_received() -> None:
    print(f"secrecy scan: {RESPONSES.seen} responses ({RESPONSES.chars} characters)")
    assert not RESPONSES.found, "\n".join(sorted(set(RESPONSES.found))[:40])


async def test_the_response_capture_sees_grpc_and_gateway_answers(server) -> None:  # type: ignore[no-untyped-def]
    """The capture itself: a gRPC answer and a gateway body are scanned, a provider's is not
    (the sandbox mints tokens; answering them to us is its job)."""
    before = RESPONSES.seen
    health = health_pb2_grpc.HealthStub(server.channel)
    await health.Check(health_pb2.HealthCheckRequest())
    assert RESPONSES.seen == before + 1
    with contextlib.suppress(grpc.aio.AioRpcError):
        await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert RESPONSES.seen == before + 2  # the error's details too

    leaked = f"EAAB{uuid.uuid4().hex}{uuid.uuid4().hex}"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"token": leaked})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        await http.get("http://sandbox.test/graph/v21.0/oauth/access_token")
        assert RESPONSES.seen == before + 2
        await http.get("http://sidecar.test/api/v1/conexoes/meta/status")
    assert RESPONSES.seen == before + 3
    caught = [f for f in RESPONSES.found if leaked[:12] in f]
    assert caught, RESPONSES.found[-3:]
    for finding in caught:  # planted here, not the service's
        RESPONSES.found.remove(finding)


async def test_what_was_sent_to_meta_holds_no_raw_email_or_phone(
    owner_engine: AsyncEngine,
) -> None:
    problems = []
    for row in await _rows(owner_engine, "log_conversions_api", "*"):
        for pattern in (RAW_EMAIL, RAW_PHONE):
            found = pattern.search(row)
            if found:
                problems.append(f"log_conversions_api: {found.group()} in {row[:120]}")
    assert not problems, "\n".join(problems[:20])


def test_the_scan_finds_what_it_looks_for() -> None:
    """The detectors themselves: a scan that cannot find anything proves nothing."""
    leaked = (
        f"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4eHh4eHgifQ.c2lnbmF0dXJlX3h4 "
        f"token=EAAB{uuid.uuid4().hex}{uuid.uuid4().hex} code=4/0Ab{uuid.uuid4().hex} "
        f"secret={META_SECRET}"
    )
    kinds = {f.split(": ", 1)[1].split(" (")[0] for f in findings("line", leaked)}
    assert kinds == {"a bearer JWT", "a Meta access token", "a Google authorization code",
                     "the Meta app secret"}  # fmt: skip
    assert not list(findings("line", "contato 5f1c... enviado; hash 9a8b7c6d5e4f"))
    assert RAW_EMAIL.search("maria@example.com") and RAW_PHONE.search("+55 11 98765-4321")
