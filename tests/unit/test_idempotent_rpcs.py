"""Every RPC of a built room whose request takes `request_id` honours it (AIP-155).

A room lands by registering in server/services.py; from then on each of its RPCs with a
`request_id` must be declared `@idempotent` (server/idempotency.py), or this test fails.
"""

from __future__ import annotations

from importlib import import_module

import pytest

from server.idempotency import MARKER, rpc_name
from server.services import PACKAGE, SERVICES


def _servicer_class(service: str, generated: str, room: str) -> type:
    base = getattr(import_module(f"{PACKAGE}.{generated}_pb2_grpc"), f"{service}Servicer")
    module = import_module(room)
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, base) and value is not base
    ]
    assert len(found) == 1, f"{room} should define one servicer for {service}"
    return found[0]


BUILT = [(s, g, r) for s, (g, r) in SERVICES.items() if r is not None]


@pytest.mark.parametrize(("service", "generated", "room"), BUILT, ids=[b[0] for b in BUILT])
def test_rpcs_with_a_request_id_are_idempotent(service: str, generated: str, room: str) -> None:
    cls = _servicer_class(service, generated, room)
    descriptor = import_module(f"{PACKAGE}.{generated}_pb2").DESCRIPTOR.services_by_name[service]
    missing = [
        m.name
        for m in descriptor.methods
        if "request_id" in m.input_type.fields_by_name
        and not getattr(getattr(cls, m.name), MARKER, False)
    ]
    assert missing == [], f"{service}: request_id not honoured by {missing}"


def test_the_slot_names_the_full_rpc() -> None:
    from renove.conexoes.v1 import whatsapp_service_pb2 as pb

    assert rpc_name(pb.SendWhatsAppMessageRequest()) == (
        "/renove.conexoes.v1.WhatsAppService/SendWhatsAppMessage"
    )
