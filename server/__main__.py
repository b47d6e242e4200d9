"""`python -m server serve|worker|seed|token|migrate`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from datetime import timedelta

from server.auth.caller import Role
from server.auth.tokens import mint_token
from server.settings import Settings


async def _serve(settings: Settings) -> None:
    from server.app import GrpcApp, serve_until_signal
    from server.bootstrap import build_deps

    deps = await build_deps(settings)
    await serve_until_signal(GrpcApp(deps), settings.grpc_addr)


async def _worker(settings: Settings) -> None:
    """Queue workers and the scheduler, no gRPC; SIGTERM/SIGINT drain and exit."""
    import logging
    import signal

    from server.bootstrap import build_deps
    from server.observability.process import ProcessObservability
    from server.services import register_jobs

    deps = await build_deps(settings)
    register_jobs(deps, settings.extra_job_modules)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    observability = ProcessObservability(settings, deps.db)
    observability.start()
    await deps.worker.start()
    await deps.scheduler.start()
    logging.getLogger(__name__).info(
        "worker %s running %s", deps.worker.id, ", ".join(deps.jobs.operations) or "no jobs"
    )
    try:
        await stop.wait()
    finally:
        await deps.worker.stop()
        await deps.scheduler.stop()
        await observability.stop()
        await deps.close()


async def _seed(settings: Settings) -> None:
    from db.bootstrap import prepare_database
    from db.uow import Database
    from server.bootstrap import database_urls
    from server.seed import seed_demo

    owner_url, embedded = await database_urls(settings)
    db = Database(await prepare_database(owner_url, data_dir=settings.data_dir))
    try:
        demo = await seed_demo(db)
    finally:
        await db.dispose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
    print(json.dumps(demo.as_dict(), indent=2))


async def _migrate(settings: Settings) -> None:
    from db.bootstrap import prepare_database
    from server.bootstrap import database_urls

    owner_url, embedded = await database_urls(settings)
    await prepare_database(owner_url, data_dir=settings.data_dir)
    if embedded is not None:
        await asyncio.to_thread(embedded.stop)
    print("database is at the latest migration")


def _token(settings: Settings, args: argparse.Namespace) -> None:
    role = Role(args.role)
    if role is Role.SERVICE:
        secret = settings.effective_service_secret
        if secret is None:
            sys.exit("service tokens are minted with CONEXOES_SERVICE_TOKEN_SECRET, which is unset")
    else:
        secret = settings.effective_jwt_secret
        if secret is None:
            sys.exit("tokens can only be minted with an HS256 secret (CONEXOES_JWT_SECRET)")
    print(
        mint_token(
            secret,
            role=role,
            tenant_id=uuid.UUID(args.org) if args.org else None,
            user_id=uuid.UUID(args.sub) if args.sub else None,
            ttl=timedelta(hours=args.hours),
        )
    )


def _refuse_development_secrets(settings: Settings, command: str) -> None:
    """Production entry points start only with real secrets; `make run` (`python -m server
    dev`) hands its children development ones explicitly."""
    problems = settings.production_problems()
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        print(
            f"refusing to start `python -m server {command}`"
            f" with development secrets:\n{lines}\n"
            "Set them (see README, Configuration), or use `make run` for development.",
            file=sys.stderr,
        )
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m server")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gRPC server (and its workers)")
    sub.add_parser("worker", help="run queue workers and periodic tasks only (no gRPC)")
    sub.add_parser("seed", help="create the demo tenant and print its ids as JSON")
    sub.add_parser("migrate", help="create and migrate the database")
    sub.add_parser("dev", help="make run: database, server, sidecar and sandbox, wired together")
    token = sub.add_parser("token", help="mint a development token")
    token.add_argument("--role", choices=[r.value for r in Role], default="admin")
    token.add_argument("--org", help="organizacao_id (UUID)")
    token.add_argument("--sub", help="usuario_id (UUID)")
    token.add_argument("--hours", type=float, default=12)
    args = parser.parse_args(argv)

    from server.observability import logs, tracing

    settings = Settings.from_env()
    logs.install(settings.log_level, settings.log_format, settings.access_log)
    if args.command in ("serve", "worker"):
        _refuse_development_secrets(settings, args.command)
        tracing.configure(f"conexoes-{'server' if args.command == 'serve' else 'worker'}",
                          settings.otlp_endpoint)  # fmt: skip
    if args.command == "serve":
        asyncio.run(_serve(settings))
    elif args.command == "worker":
        asyncio.run(_worker(settings))
    elif args.command == "seed":
        asyncio.run(_seed(settings))
    elif args.command == "migrate":
        asyncio.run(_migrate(settings))
    elif args.command == "token":
        _token(settings, args)
    elif args.command == "dev":
        from server.dev import main as dev_main

        sys.exit(dev_main())


if __name__ == "__main__":
    main()
