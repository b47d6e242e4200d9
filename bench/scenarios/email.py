"""Row 7: e-mails per second sent through manual SMTP by one `python -m server worker`
running 4 jobs at once, to an aiosmtpd that requires STARTTLS and AUTH.

The demo member saves an SMTP connection (a real connection test); N e-mails are sent through
SendEmail (each: the RFC 5322 message built and stored in `emails_enviados` with its
`email_send` job) while no worker runs; their jobs are parked, the worker started and the jobs
made due in one UPDATE. The drain ends when every job is `completed` and the sink has
accepted every message: each job read its e-mail and connection, decrypted the password,
connected, upgraded to TLS (certificate verified), logged in, submitted, and recorded the send
(counters, change feed).

Baseline: bare aiosmtplib submissions of the same message bytes, same concurrency, same sink,
from a process on the server core (no queue, no database, no decryption).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
from renove.conexoes.v1 import email_service_pb2 as epb
from renove.conexoes.v1 import email_service_pb2_grpc as epb_grpc

from bench import smtp_sink
from bench.cpu import per_item_ms
from bench.procs import run_load
from bench.report import Figure
from bench.scenarios.context import Context
from bench.stack import free_port
from bench.stats import median_of
from server.auth.caller import Role

ROW = "8. e-mail send (SMTP)"
CONCURRENCY = 4


async def _enqueue(ctx: Context, stub: epb_grpc.EmailServiceStub, count: int) -> list[str]:
    md = ctx.stack.md(Role.MEMBER)
    ids: list[str] = []
    sem = asyncio.Semaphore(16)

    async def send(index: int) -> None:
        async with sem:
            reply = await stub.SendEmail(
                epb.SendEmailRequest(
                    to=[epb.EmailAddress(email="cliente@bench.example", nome="Cliente")],
                    subject=f"Proposta comercial {index}",
                    body_text="Olá! Segue a proposta comercial combinada.",
                    body_html="<p>Olá! Segue a <b>proposta comercial</b> combinada.</p>",
                    request_id=str(uuid.uuid4()),
                ),
                metadata=md,
            )
            ids.append(reply.job_id)

    await asyncio.gather(*(send(i) for i in range(count)))
    return ids


async def _drain(
    ctx: Context, stub: epb_grpc.EmailServiceStub, sink: smtp_sink.SmtpSink, count: int
) -> dict[str, float]:
    stack = ctx.stack
    ids = await _enqueue(ctx, stub, count)
    before = sink.accepted
    conn = await asyncpg.connect(stack.dsn)
    try:
        await conn.execute(
            "UPDATE eventos_pendentes SET proxima_tentativa = now() + interval '1 hour'"
            " WHERE id = ANY($1::uuid[])",
            ids,
        )
        await stack.start_worker(CONCURRENCY, name="queue-worker")
        cpu_before = stack.cpu()
        started = time.perf_counter()
        await conn.execute(
            "UPDATE eventos_pendentes SET proxima_tentativa = now() WHERE id = ANY($1::uuid[])",
            ids,
        )
        query = (
            "SELECT count(*) FILTER (WHERE status = 'completed'),"
            " count(*) FILTER (WHERE status = 'failed')"
            " FROM eventos_pendentes WHERE id = ANY($1::uuid[])"
        )
        async with asyncio.timeout(300):
            while True:
                completed, failed = await conn.fetchrow(query, ids)
                if completed + failed >= count:
                    break
                await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        cpu = per_item_ms(cpu_before, stack.cpu(), count)
    finally:
        await conn.close()
        await stack.stop_worker("queue-worker")
    accepted = sink.accepted - before
    if failed or accepted != completed:
        ctx.report.notes.append(
            f"{ROW}: {failed} of {count} send jobs failed; the sink accepted {accepted}"
        )
    return {"emails": completed, "seconds": round(elapsed, 3),
            "per_s": round(completed / elapsed, 1), "cpu_ms_per_email": cpu}  # fmt: skip


async def _sample_message(ctx: Context) -> str:
    conn = await asyncpg.connect(ctx.stack.dsn)
    try:
        raw: bytes = await conn.fetchval(
            "SELECT mensagem FROM emails_enviados WHERE status = 'sent' ORDER BY criado_em LIMIT 1"
        )
    finally:
        await conn.close()
    return raw.decode("ascii")  # quoted-printable and base64 parts: 7-bit


async def run(ctx: Context) -> None:
    stack, profile = ctx.stack, ctx.profile
    certs = stack.smtp_certs
    sink = smtp_sink.SmtpSink(certs, free_port())
    sink.start()
    try:
        stub = epb_grpc.EmailServiceStub(ctx.channel)
        await stub.SaveSmtpConfig(
            epb.SaveSmtpConfigRequest(
                email=smtp_sink.USER,
                senha=smtp_sink.PASSWORD,
                smtp_host=sink.host,
                smtp_port=sink.port,
                nome_remetente="Vendedor Bench",
                request_id=str(uuid.uuid4()),
            ),
            metadata=stack.md(Role.MEMBER),
        )
        count = profile.email_jobs
        ours, bare = [], []
        for _ in range(profile.runs):
            ours.append(await _drain(ctx, stub, sink, count))
            message = await _sample_message(ctx)
            bare.append(await run_load(stack.reaper, "bench.baselines.smtp_send", {
                "host": sink.host, "port": sink.port, "ca_file": str(certs.ca_file),
                "user": smtp_sink.USER, "password": smtp_sink.PASSWORD, "messages": count,
                "concurrency": CONCURRENCY, "message": message,
            }, stack.load_env(), 300, server_side=True))  # fmt: skip
    finally:
        sink.stop()
    ctx.report.add(Figure(
        ROW, f"e-mails/s, {CONCURRENCY} at once", median_of(ours, "per_s"),
        median_of(bare, "per_s"), "higher", len(ours),
        "bare aiosmtplib (STARTTLS + AUTH + DATA)", f"{count} e-mails per drain",
    ))  # fmt: skip
    ctx.report.notes.append(
        f"{ROW}: CPU ms per e-mail on the server core (last run): {ours[-1]['cpu_ms_per_email']}"
    )
    ctx.report.raw["email"] = {"ours": ours, "baseline": bare}
