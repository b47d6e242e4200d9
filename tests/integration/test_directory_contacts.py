"""The contact mirror against real PostgreSQL: newest write wins, deletes win over older
upserts, bad values change nothing, fields this service learned itself are kept."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from db.models import Contact
from db.uow import Database
from server.auth.caller import Caller, Role
from server.crm_directory.contacts import ContactValues, delete_contact, upsert_contact
from server.errors import InvalidArgument
from tests.conftest import MakeTenant, Tenant

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def service(tenant: Tenant) -> Caller:
    return Caller(role=Role.SERVICE, tenant_id=tenant.id)


async def read(db: Database, tenant: Tenant, contact_id: uuid.UUID) -> Contact | None:
    async with db.unit_of_work(service(tenant)) as session:
        row: Contact | None = await session.get(Contact, contact_id)
        return row


async def test_newest_write_wins_whatever_the_arrival_order(
    db: Database, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    cid = uuid.uuid4()
    newer = ContactValues(
        cid,
        at(2),
        nome="Ana Souza",
        owner_id=tenant.member_id,
        emails=["Ana@Example.com", "ana@example.com", "ana.souza@example.com"],
        telefones=["(11) 98765-4321"],
        cidade="Sao Paulo",
        estado="SP",
        cep="01310-100",
        pais="br",
        consentimento=True,
    )
    older = ContactValues(cid, at(1), nome="Ana (old)", emails=["old@example.com"])
    async with db.unit_of_work(service(tenant)) as session:
        first = await upsert_contact(session, tenant.id, newer)
        stale = await upsert_contact(session, tenant.id, older)
        repeat = await upsert_contact(session, tenant.id, newer)
    assert (first.applied, first.created) == (True, True)
    assert not stale.applied and not repeat.applied
    row = await read(db, tenant, cid)
    assert row is not None
    assert (row.nome, row.email, row.telefone) == ("Ana Souza", "ana@example.com", "+5511987654321")
    assert row.emails == ["ana@example.com", "ana.souza@example.com"]
    assert (row.cidade, row.estado, row.cep, row.pais, row.consentimento) == (
        "Sao Paulo",
        "SP",
        "01310-100",
        "BR",
        True,
    )
    assert row.owner_id == tenant.member_id and row.core_atualizado_em == at(2)


async def test_a_delete_wins_over_older_upserts_even_when_they_arrive_later(
    db: Database, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    cid = uuid.uuid4()
    async with db.unit_of_work(service(tenant)) as session:
        gone = await delete_contact(session, tenant.id, cid, at(5))
        late = await upsert_contact(session, tenant.id, ContactValues(cid, at(4), nome="Late"))
        tie = await upsert_contact(session, tenant.id, ContactValues(cid, at(5), nome="Tie"))
    assert gone.applied and not late.applied and not tie.applied
    row = await read(db, tenant, cid)
    assert row is not None and row.deletado_em is not None and row.nome is None
    async with db.unit_of_work(service(tenant)) as session:
        back = await upsert_contact(
            session, tenant.id, ContactValues(cid, at(6), nome="Back", consentimento=True)
        )
        withdrawn = await upsert_contact(
            session, tenant.id, ContactValues(cid, at(7), nome="Back", consentimento=False)
        )
    assert back.applied and withdrawn.consent_withdrawn
    row = await read(db, tenant, cid)
    assert row is not None and row.deletado_em is None and row.nome == "Back"


async def test_bad_values_are_field_violations_and_change_nothing(
    db: Database, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    cid = uuid.uuid4()
    bad = ContactValues(
        cid,
        at(1),
        nome="X",
        owner_id=uuid.uuid4(),
        emails=["not-an-email"],
        telefones=["123"],
        pais="Brasil",
    )
    with pytest.raises(InvalidArgument) as error:
        async with db.unit_of_work(service(tenant)) as session:
            await upsert_contact(session, tenant.id, bad, prefix="contacts[0].")
    assert {v.field for v in error.value.violations} == {
        "contacts[0].emails[0]",
        "contacts[0].telefones[0]",
        "contacts[0].pais",
        "contacts[0].owner_id",
    }
    assert await read(db, tenant, cid) is None


async def test_what_this_service_learned_is_kept_and_a_taken_phone_is_not_stolen(
    db: Database, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    ours = uuid.uuid4()
    async with db.unit_of_work(service(tenant)) as session:
        session.add(
            Contact(
                id=ours,
                organizacao_id=tenant.id,
                nome="From a lead",
                telefone="+5511987650000",
                empresa="Acme",
                tags=["lead-ads"],
            )
        )
    core = uuid.uuid4()
    async with db.unit_of_work(service(tenant)) as session:
        await upsert_contact(
            session,
            tenant.id,
            ContactValues(ours, at(1), nome="Named by the core", telefones=["+5511987650000"]),
        )
        await upsert_contact(
            session,
            tenant.id,
            ContactValues(
                core, at(1), nome="Other", telefones=["+5511987650000", "+5511912345678"]
            ),
        )
    mine = await read(db, tenant, ours)
    assert mine is not None
    assert (mine.nome, mine.empresa, mine.tags) == ("Named by the core", "Acme", ["lead-ads"])
    other = await read(db, tenant, core)
    assert other is not None and other.telefone == "+5511912345678"
    assert other.telefones == ["+5511987650000", "+5511912345678"]
    async with db.unit_of_work(service(tenant)) as session:
        found = await session.scalar(select(Contact.id).where(Contact.telefone == "+5511987650000"))
    assert found == ours
