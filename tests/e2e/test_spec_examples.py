"""Every request/response example of the spec's endpoint sections, through the real sidecar.

Two ways:
- Every example against a server that answers with the example itself (`CannedServer`): the
  contract has every field the example shows, by the same name and nesting (strict parsing);
  the gateway understands the example request, writes the example response back exactly (wire
  strings, numbers, times) and answers the spec's status code.
- The WhatsApp examples against the real server with WAHA played by the sandbox: the same
  keys, the same wire values (`qr_pending`, `connected`), the same status codes, live data.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from server.auth.caller import Role
from tests.e2e.gateway_stack import running_sidecar
from tests.e2e.spec_examples import EXAMPLES, SpecExample
from tests.support import grpc_server
from tests.support.canned_server import CannedServer
from tests.support.databases import isolated_database_fixture, isolated_owner_engine_fixture
from tests.support.whatsapp_stack import Stack, poll, wait_waha_status, whatsapp_stack
from webhooks_http.app import contract_files
from webhooks_http.gateway import HttpRule, WireCodec, collect_rules

RULES = {(rule.method, rule.path_template): rule for rule in collect_rules(contract_files())}
CODEC = WireCodec(contract_files())
_TIMESTAMP = "google.protobuf.Timestamp"


def _rule(example: SpecExample) -> HttpRule:
    return RULES[(example.method, example.path)]


def _parse(data: dict[str, Any], message: Descriptor) -> Message:
    """The example as a message: an unknown field name or enum string fails here."""
    data = copy.deepcopy(data)
    CODEC.from_wire(data, message)
    return json_format.ParseDict(data, message_factory.GetMessageClass(message)())


def _as_json(message: Message) -> Any:
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return CODEC.to_wire(data, message.DESCRIPTOR)


def assert_like(
    expected: dict[str, Any], actual: Any, message: Descriptor, *, exact: bool, where: str = ""
) -> None:
    """Every key of the example is in `actual`, nested the same way.

    Enum values are always compared exactly (the wire strings are the point); other values
    exactly when `exact`, else by JSON type (live ids and times differ from the example's).
    """
    assert isinstance(actual, dict), f"{where or 'body'}: {actual!r} is not an object"
    for key, value in expected.items():
        field = message.fields_by_name.get(key)
        assert field is not None, f"{where}{key}: not a field of {message.full_name}"
        assert key in actual, f"{where}{key}: missing from {actual}"
        if isinstance(value, list):
            assert isinstance(actual[key], list), f"{where}{key}"
            assert len(actual[key]) == len(value) or not exact, f"{where}{key}"
            for index, (item, got) in enumerate(zip(value, actual[key], strict=False)):
                _assert_value(item, got, field, exact, f"{where}{key}[{index}]")
        else:
            _assert_value(value, actual[key], field, exact, f"{where}{key}")


def _assert_value(expected: Any, actual: Any, field: FieldDescriptor, exact: bool, at: str) -> None:
    nested = field.message_type
    if field.enum_type is not None:
        assert actual == expected, f"{at}: {actual!r}, the spec says {expected!r}"
    elif nested is not None and nested.full_name == _TIMESTAMP:
        assert isinstance(actual, str), f"{at}: {actual!r} is not a time"
        got = dt.datetime.fromisoformat(actual)
        assert got == dt.datetime.fromisoformat(expected) or not exact, f"{at}: {actual}"
    elif nested is not None:
        assert_like(expected, actual, nested, exact=exact, where=f"{at}.")
    elif exact:
        assert actual == expected, f"{at}: {actual!r}, the spec says {expected!r}"
    else:
        assert type(actual) is type(expected), f"{at}: {actual!r} vs the spec's {expected!r}"


def test_every_example_is_an_endpoint_of_the_contract() -> None:
    assert len(EXAMPLES) == 8
    assert all((example.method, example.path) in RULES for example in EXAMPLES)


# --- every example, the server answering with the example itself ---------------------------


@pytest_asyncio.fixture(scope="module")
async def canned(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[CannedServer, str]]:
    server = CannedServer(contract_files())
    data_dir = str(tmp_path_factory.mktemp("canned"))
    # The sidecar never touches a database: the URL is never used.
    settings = grpc_server.test_settings("postgresql://unused@127.0.0.1/none", data_dir)
    async with server.running() as channel, running_sidecar(settings, channel) as url:
        yield server, url


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
async def test_the_gateway_speaks_the_example(
    example: SpecExample, canned: tuple[CannedServer, str]
) -> None:
    server, url = canned
    rule = _rule(example)
    output = rule.method_descriptor.output_type
    body = {rule.response_body: example.response} if rule.response_body else example.response
    server.reply(rule.grpc_path, _parse(body, output))

    async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
        response = await http.request(
            example.method,
            example.path,
            json=example.request,
            headers={"authorization": "Bearer canned"},
        )

    assert response.status_code == example.status, response.text
    assert_like(example.response, response.json(), _response_type(rule), exact=True)
    if example.request is not None:
        received = server.received[rule.grpc_path]
        request_type = rule.method_descriptor.input_type
        assert_like(example.request, _as_json(received), request_type, exact=True)


def _response_type(rule: HttpRule) -> Descriptor:
    output = rule.method_descriptor.output_type
    if not rule.response_body:
        return output
    nested = output.fields_by_name[rule.response_body].message_type
    assert nested is not None
    return nested


# --- the WhatsApp examples against the real server ------------------------------------------

# A database of its own: other modules' servers run workers that could claim our jobs.
database = isolated_database_fixture()
owner_engine = isolated_owner_engine_fixture()


@pytest_asyncio.fixture(scope="module")
async def stack(database: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with whatsapp_stack(database.owner_url, str(tmp_path_factory.mktemp("ex"))) as running:
        yield running


def _example(method: str, path: str) -> SpecExample:
    return next(e for e in EXAMPLES if (e.method, e.path) == (method, path))


async def test_whatsapp_examples_live(stack: Stack, make_tenant: Any, make_caller: Any) -> None:
    caller = make_caller(await make_tenant(), Role.MEMBER)
    auth = {"authorization": f"Bearer {stack.server.token(caller)}"}
    start = _example("POST", "/api/v1/conexoes/whatsapp/iniciar")
    qr = _example("GET", "/api/v1/conexoes/whatsapp/qr-code")
    status = _example("GET", "/api/v1/conexoes/whatsapp/status")

    async with httpx.AsyncClient(base_url=stack.sidecar_url, timeout=20.0) as http:

        async def call(example: SpecExample) -> Any:
            response = await http.request(
                example.method, example.path, json=example.request, headers=auth
            )
            assert response.status_code == example.status, response.text
            expected_type = _response_type(_rule(example))
            assert_like(example.response, response.json(), expected_type, exact=False)
            return response.json()

        async def status_once(done: Any) -> Any:
            body = (await http.get(status.path, headers=auth)).json()
            return body if done(body) else None

        session_name = (await call(start))["session_name"]
        await wait_waha_status(stack, session_name, "SCAN_QR_CODE")
        await call(qr)
        await stack.control(f"sessions/{session_name}/scan", {"phone": "5511999999999"})
        fresh = await poll(lambda: status_once(lambda b: b["status"] == "connected"))
        # Connected, no message yet: the field is there all the same, as null.
        assert fresh["ultima_mensagem_em"] is None

        await stack.control(
            f"sessions/{session_name}/inbound",
            {"from": "5511888888888@c.us", "body": "Ola, gostaria de saber mais sobre..."},
        )
        await poll(lambda: status_once(lambda b: b["ultima_mensagem_em"] is not None))
        body = await call(status)
    assert body["phone_number"] == "+5511999999999"
