"""The `conexoes` CLI against the real server, and the pure parts of `make run` (its plan).

The CLI is synchronous gRPC: it runs in a worker thread while this loop serves the server.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
import jwt
from renove.conexoes.v1 import connections_service_pb2 as conn_pb
from renove.conexoes.v1 import connections_service_pb2_grpc as conn_grpc
from renove.conexoes.v1 import whatsapp_service_pb2 as wa_pb
from typer.testing import CliRunner

from cli.errors import describe_rpc_error
from cli.main import app
from cli.render import enum_label, qr_text
from server.auth.caller import Role
from server.dev import demo_ids
from server.devguide import plan_environment
from server.settings import PROVIDER_URL_ENV, Settings

SECRET = "cli-test-secret-cli-test-secret-0123456789"


def _invoke(args: list[str], **env: str) -> Any:
    return CliRunner().invoke(app, args, env={"CONEXOES_JWT_SECRET": SECRET, **env})


def test_token_defaults_to_the_demo_tenant() -> None:
    result = _invoke(["token", "--role", "member"])
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.output.strip(), SECRET, algorithms=["HS256"])
    demo = demo_ids()
    assert (claims["role"], claims["org"], claims["sub"]) == (
        "member",
        demo.organizacao_id,
        demo.member_id,
    )


def test_super_admin_token_names_no_tenant() -> None:
    result = _invoke(["token", "--role", "super_admin"])
    claims = jwt.decode(result.output.strip(), SECRET, algorithms=["HS256"])
    assert claims["role"] == "super_admin" and "org" not in claims


def test_token_refuses_an_org_that_is_not_a_uuid() -> None:
    result = _invoke(["token", "--org", "acme"])
    assert result.exit_code == 2


def test_enum_labels_and_terminal_qr() -> None:
    session = wa_pb.WhatsAppSession(status=wa_pb.WAHA_SESSION_STATUS_QR_PENDING)
    assert enum_label(session, "status") == "qr_pending"
    drawn = qr_text("2@abc,def,ghi")
    assert "█" in drawn and len(drawn.splitlines()) > 10


async def _cli(server: Any, caller: Any, *args: str) -> Any:
    token = server.token(caller) if caller is not None else ""
    argv = ["--address", server.address, *(["--token", token] if token else []), *args]
    return await asyncio.to_thread(_invoke, argv, CONEXOES_TOKEN="")


async def test_whatsapp_status_over_grpc(server: Any, make_tenant: Any, make_caller: Any) -> None:
    result = await _cli(server, make_caller(await make_tenant(), Role.MEMBER), "whatsapp", "status")
    assert result.exit_code == 0, result.output
    assert "disconnected" in result.output


async def test_member_on_the_dlq_sees_the_status_and_reason(
    server: Any, make_tenant: Any, make_caller: Any
) -> None:
    result = await _cli(server, make_caller(await make_tenant(), Role.MEMBER), "dlq", "list")
    assert result.exit_code == 1
    assert "PERMISSION_DENIED" in result.output
    assert "reason:" in result.output


async def test_no_token_is_explained(server: Any) -> None:
    result = await _cli(server, None, "connections")
    assert result.exit_code == 1
    assert "UNAUTHENTICATED" in result.output and "CONEXOES_TOKEN" in result.output


async def test_unreachable_server_is_explained() -> None:
    result = await asyncio.to_thread(
        _invoke, ["--address", "127.0.0.1:1", "--timeout", "2", "connections"]
    )
    assert result.exit_code == 1
    assert "UNAVAILABLE" in result.output


async def test_field_violations_are_listed(server: Any) -> None:
    def call() -> grpc.RpcError:
        with grpc.insecure_channel(server.address) as channel:
            stub = conn_grpc.ConnectionsServiceStub(channel)
            request = conn_pb.UpdatePlatformCredentialsRequest(
                provider=conn_pb.PLATFORM_PROVIDER_WAHA,
                waha=conn_pb.WahaCredentialsUpdate(base_url="ftp://nope"),
            )
            try:
                stub.UpdatePlatformCredentials(
                    request, metadata=server.metadata(server.super_admin()), timeout=10
                )
            except grpc.RpcError as exc:
                return exc
        raise AssertionError("the bad base_url was accepted")

    lines = describe_rpc_error(await asyncio.to_thread(call))
    assert lines[0].startswith("INVALID_ARGUMENT")
    assert any(line.startswith("reason: ") for line in lines)
    assert any(line.startswith("field ") and "base_url" in line for line in lines)


def test_make_run_points_only_unset_providers_at_the_sandbox(tmp_path: Path) -> None:
    env = {
        "CONEXOES_HTTP_ADDR": "127.0.0.1:18080",
        "CONEXOES_META_GRAPH_URL": "https://graph.example",  # a harness's own Graph endpoint
        "CONEXOES_DATA_DIR": str(tmp_path),
    }
    settings = Settings.from_env(env)
    plan = plan_environment(env, settings, "127.0.0.1:18090", mounted=["/waha", "/graph"])
    server = plan.server_env
    assert server["CONEXOES_PUBLIC_URL"] == "http://127.0.0.1:18080"
    assert server["CONEXOES_WAHA_URL"] == "http://127.0.0.1:18090/waha"
    assert server["CONEXOES_META_GRAPH_URL"] == "https://graph.example"
    assert server["CONEXOES_META_OAUTH_URL"] == "http://127.0.0.1:18090/graph"
    # Not mounted by this sandbox: left to the real provider.
    assert "CONEXOES_GOOGLE_API_URL" not in server
    # Both sides share the WAHA key the sandbox checks.
    assert server["CONEXOES_WAHA_API_KEY"] == plan.sandbox_env["CONEXOES_WAHA_API_KEY"]
    assert plan.sandboxed == {
        "/waha": ["CONEXOES_WAHA_URL"],
        "/graph": ["CONEXOES_META_OAUTH_URL"],
    }
    # Outbound webhooks may go to a receiver on this machine, unless told otherwise.
    assert server["CONEXOES_WEBHOOK_ALLOW_PRIVATE_TARGETS"] == "1"
    refused = {**env, "CONEXOES_WEBHOOK_ALLOW_PRIVATE_TARGETS": "0"}
    again = plan_environment(refused, Settings.from_env(refused), None, mounted=None)
    assert again.server_env["CONEXOES_WEBHOOK_ALLOW_PRIVATE_TARGETS"] == "0"


def test_make_run_without_a_sandbox_when_every_provider_is_given(tmp_path: Path) -> None:
    env = {name: f"https://{uuid.uuid4().hex}.example" for name in PROVIDER_URL_ENV}
    plan = plan_environment(env, Settings.from_env(env), None, mounted=None)
    assert plan.sandbox_url is None and plan.sandboxed == {}
    assert "CONEXOES_WAHA_API_KEY" not in plan.server_env
