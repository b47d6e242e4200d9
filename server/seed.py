"""`python -m server seed`: a demo tenant (admin, member, a pipeline with stages), idempotent."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass

from sqlalchemy.dialects.postgresql import insert

from db.models import Pipeline, PipelineStage, User
from db.uow import Database
from server.auth.caller import Caller, Role

_NS = uuid.UUID("6f1d1f5e-8a43-4c57-9a3e-2b1c8e0d7a10")
STAGES = ("Novo lead", "Qualificado", "Reuniao agendada", "Proposta", "Fechado")


def _id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NS, name)


@dataclass(frozen=True)
class DemoTenant:
    organizacao_id: str
    admin_id: str
    member_id: str
    funil_id: str
    etapa_ids: list[str]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def seed_demo(db: Database, *, name: str = "demo") -> DemoTenant:
    """Creates (or finds) the demo tenant named ``name``; the same ids every time."""
    org, admin, member = _id(f"{name}:org"), _id(f"{name}:admin"), _id(f"{name}:member")
    funil = _id(f"{name}:funil")
    stages = [_id(f"{name}:etapa:{i}") for i in range(len(STAGES))]
    admin_caller = Caller(role=Role.ADMIN, tenant_id=org, user_id=admin)
    await db.ensure_identity(admin_caller)
    async with db.unit_of_work(admin_caller) as session:
        await session.execute(
            insert(User)
            .values(
                [
                    {
                        "id": admin,
                        "organizacao_id": org,
                        "nome": "Ana Admin",
                        "email": "ana@demo.renove.example",
                        "role": "admin",
                    },
                    {
                        "id": member,
                        "organizacao_id": org,
                        "nome": "Marcos Vendedor",
                        "email": "marcos@demo.renove.example",
                        "role": "member",
                    },
                ]
            )
            .on_conflict_do_update(index_elements=["id"], set_={"ativo": True})
        )
        await session.execute(
            insert(Pipeline)
            .values(id=funil, organizacao_id=org, nome="Vendas")
            .on_conflict_do_nothing()
        )
        await session.execute(
            insert(PipelineStage)
            .values(
                [
                    {"id": sid, "organizacao_id": org, "funil_id": funil, "nome": n, "ordem": i}
                    for i, (sid, n) in enumerate(zip(stages, STAGES, strict=True))
                ]
            )
            .on_conflict_do_nothing()
        )
    return DemoTenant(str(org), str(admin), str(member), str(funil), [str(s) for s in stages])
