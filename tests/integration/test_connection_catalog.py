"""The connection catalog (server/catalog.py) against everything that must exist for each kind:
permission rules, retry policies and breakers, the job types each room really registers,
platform credentials, the overview row, the ingress routes and the sandbox fake of every room
that is built."""

from __future__ import annotations

from dataclasses import replace
from importlib import import_module
from typing import Any

import pytest
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import connections_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import resources_pb2 as rpb

from sandbox.app import build_sandbox_app
from sandbox.settings import SandboxSettings
from server.auth.caller import Role
from server.auth.permissions import PACKAGE, PERMISSIONS
from server.catalog import KINDS, SHARED_OPERATIONS, ConnectionKind, MemberAccess
from server.connections.platform_credentials import CATALOG as PLATFORM_CATALOG
from server.connections.platform_rpc import PROVIDER_KEYS
from server.devguide import SANDBOX_PREFIXES
from server.ingress import routes
from server.resilience.breaker import BREAKER_CONFIGS
from server.resilience.jobs import JobRegistry
from server.resilience.operations import OPERATIONS
from server.resilience.policies import POLICIES
from server.services import SERVICES

ALL = list(KINDS.values())
IDS = [k.key for k in ALL]


def _rules(kind: ConnectionKind) -> dict[str, object]:
    generated = SERVICES[kind.service][0]
    service = import_module(f"{PACKAGE}.{generated}_pb2").DESCRIPTOR.services_by_name[kind.service]
    return {m.name: PERMISSIONS.get(f"/{PACKAGE}.{kind.service}/{m.name}") for m in service.methods}


def test_every_connection_type_of_the_contract_is_in_the_catalog() -> None:
    declared = {v.number for v in rpb.ConnectionType.DESCRIPTOR.values if v.number != 0}
    assert set(KINDS) == declared
    assert len({k.key for k in ALL}) == len(ALL)


@pytest.mark.parametrize("kind", ALL, ids=IDS)
def test_its_service_has_a_rule_for_every_rpc_matching_the_member_matrix(
    kind: ConnectionKind,
) -> None:
    rules = _rules(kind)
    assert None not in rules.values(), f"{kind.service}: RPCs without a permission rule"
    for_users = [r for r in rules.values() if Role.SERVICE not in r.roles or r.member_grant]  # type: ignore[attr-defined]
    if kind.access is MemberAccess.ADMIN_ONLY:
        assert all(
            Role.MEMBER not in r.roles and r.member_grant is None  # type: ignore[attr-defined]
            for r in for_users
        )
    elif kind.access is MemberAccess.GRANT:
        assert kind.grant is not None
        assert any(r.member_grant == kind.grant for r in for_users)  # type: ignore[attr-defined]
    else:
        assert any(Role.MEMBER in r.roles for r in for_users)  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ALL, ids=IDS)
def test_its_operations_have_a_policy_and_a_breaker_it_declares(kind: ConnectionKind) -> None:
    assert kind.operations and kind.breakers
    assert set(kind.breakers) <= set(BREAKER_CONFIGS)
    for op in kind.operations:
        assert OPERATIONS[op.name] is op
        assert POLICIES[op.policy.operation] == op.policy
        assert op.breaker is None or op.breaker in kind.breakers


def test_every_declared_operation_belongs_to_a_connection() -> None:
    owned = {op.name for k in ALL for op in k.operations} | {o.name for o in SHARED_OPERATIONS}
    assert set(OPERATIONS) == owned
    for route in (routes.WAHA, routes.META_LEADGEN, routes.INSTAGRAM, routes.GOOGLE_CALENDAR):
        assert OPERATIONS[route.operation.name] is route.operation


class _NoSchedule:
    def every(self, *args: Any, **kwargs: Any) -> None:
        pass


BUILT = [(s, room) for s, (_, room) in SERVICES.items() if room is not None]


def _registered(room: str, deps: Any) -> set[str]:
    """The job types `room`'s register_jobs registers."""
    registry = JobRegistry()
    hook = getattr(import_module(room), "register_jobs", None)
    if hook is not None:
        hook(replace(deps, jobs=registry, scheduler=_NoSchedule()))
    return set(registry.operations)


@pytest.mark.parametrize(("service", "room"), BUILT, ids=[s for s, _ in BUILT])
async def test_a_built_room_registers_the_operations_the_catalog_gives_it(
    service: str, room: str, server
) -> None:
    registered = _registered(room, server.deps)
    declared = {op.name for k in ALL if k.service == service for op in k.operations}
    if declared:
        assert registered == declared
    else:  # a service of no connection (the CRM link, the ingress, the admin RPCs)
        assert registered <= {o.name for o in SHARED_OPERATIONS}


async def test_every_declared_operation_has_a_handler(server) -> None:
    handled = set().union(*(_registered(room, server.deps) for _, room in BUILT))
    assert handled == set(OPERATIONS)


@pytest.mark.parametrize("kind", ALL, ids=IDS)
def test_its_platform_credentials_exist(kind: ConnectionKind) -> None:
    if kind.platform is None:
        assert kind.type == rpb.CONNECTION_TYPE_EMAIL_SMTP_MANUAL  # the user brings them all
        return
    assert kind.platform in PLATFORM_CATALOG
    assert kind.platform in PROVIDER_KEYS.values()


@pytest.mark.parametrize("kind", ALL, ids=IDS)
async def test_a_built_room_has_its_sandbox_fake(kind: ConnectionKind) -> None:
    if SERVICES[kind.service][1] is None:
        return  # no room yet: its fake arrives with it, and this test then holds it to that
    if kind.sandbox is None:
        assert kind.type == rpb.CONNECTION_TYPE_EMAIL_SMTP_MANUAL  # a real SMTP server
        return
    assert kind.sandbox in SANDBOX_PREFIXES  # `make run` points the provider's URLs at it
    app = build_sandbox_app(SandboxSettings())
    try:
        assert kind.sandbox in app.state.fakes
    finally:
        for fake in app.state.fakes.values():
            await fake.aclose()


async def test_the_overview_has_a_row_for_every_kind(server, make_tenant, make_caller) -> None:
    tenant = await make_tenant()
    overview = await pb_grpc.ConnectionsServiceStub(server.channel).GetConnectionsOverview(
        pb.GetConnectionsOverviewRequest(),
        metadata=server.metadata(make_caller(tenant, Role.ADMIN)),
    )
    assert {c.connection_type for c in overview.connections} == set(KINDS)
