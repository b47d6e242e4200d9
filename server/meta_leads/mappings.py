"""Lead Ads form mappings (formularios_lead_ads): create, read, update (FieldMask), delete.

A mapping is checked as a whole before it is stored: the page is selected and the form is
one of its forms (asked of Meta, which also gives the question keys), the pipeline and stage
exist and belong together, the owner is an active user of the tenant (empty = automatic
round-robin over the directory's distribution pool), every field-map key is a question of the
form and every value a CRM field (`nome`, `email`, `telefone`, `empresa`, `cargo`, `cidade`)
or one of the CRM directory's custom fields `custom:<id>` (free-form while the directory
defines none). Every problem is reported at once as a field violation.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import LeadAdsForm, MetaPage, Pipeline, PipelineStage, User
from server.audit import record_audit
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.crm_directory import custom_targets
from server.errors import FieldViolation, InvalidArgument
from server.meta_leads.errors import MappingExists, MappingNotFound
from server.meta_leads.forms import page_forms
from server.meta_leads.unmapped import release_unmapped_leads

CRM_FIELDS = frozenset({"nome", "email", "telefone", "empresa", "cargo", "cidade"})
# `custom:<id>`: a custom field of the CRM directory (server/crm_directory/fields.py).
_CUSTOM = re.compile(r"^custom:[A-Za-z0-9_-]{1,64}$")
MAX_TAGS, MAX_TAG_LEN = 20, 50
WRITABLE = frozenset(
    {
        "form_name",
        "funil_id",
        "etapa_destino_id",
        "owner_id",
        "mapeamento_campos",
        "criar_oportunidade",
        "tags_automaticas",
        "notificar_owner",
        "ativo",
    }
)
IMMUTABLE = frozenset({"page_id", "form_id"})


@dataclass
class MappingInput:
    """What the caller sets (strings as sent; validated together)."""

    page_id: str = ""
    form_id: str = ""
    form_name: str = ""
    funil_id: str = ""
    etapa_destino_id: str = ""
    owner_id: str = ""
    mapeamento_campos: dict[str, str] = field(default_factory=dict)
    criar_oportunidade: bool = True
    tags_automaticas: list[str] = field(default_factory=list)
    notificar_owner: bool = True
    ativo: bool = True


def _uuid(value: str, name: str, problems: list[FieldViolation]) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        problems.append(FieldViolation(name, "must be a UUID"))
        return None


async def _validate_destination(
    session: AsyncSession, data: MappingInput, problems: list[FieldViolation]
) -> tuple[uuid.UUID | None, uuid.UUID | None, uuid.UUID | None]:
    funil = etapa = owner = None
    if not data.funil_id:
        problems.append(FieldViolation("mapping.funil_id", "required"))
    elif (funil := _uuid(data.funil_id, "mapping.funil_id", problems)) and not _live(
        await session.get(Pipeline, funil)
    ):
        problems.append(FieldViolation("mapping.funil_id", "no such pipeline"))
        funil = None
    if not data.etapa_destino_id:
        problems.append(FieldViolation("mapping.etapa_destino_id", "required"))
    elif etapa := _uuid(data.etapa_destino_id, "mapping.etapa_destino_id", problems):
        stage = await session.get(PipelineStage, etapa)
        if stage is None or not _live(stage):
            problems.append(FieldViolation("mapping.etapa_destino_id", "no such stage"))
        elif funil is not None and stage.funil_id != funil:
            problems.append(
                FieldViolation("mapping.etapa_destino_id", "stage is not in the chosen pipeline")
            )
    if data.owner_id and (owner := _uuid(data.owner_id, "mapping.owner_id", problems)):
        user = await session.get(User, owner)
        if user is None or not user.ativo or not _live(user):
            problems.append(FieldViolation("mapping.owner_id", "no active user with this id"))
    return funil, etapa, owner


def _live(row: Pipeline | PipelineStage | User | None) -> bool:
    return row is not None and row.deletado_em is None


def _validate_fields(
    mapping: Mapping[str, str],
    questions: Iterable[str] | None,
    problems: list[FieldViolation],
    custom: frozenset[str] | None = None,
) -> None:
    keys = set(questions) if questions is not None else None
    used: set[str] = set()
    for key, target in mapping.items():
        name = f"mapping.mapeamento_campos[{key}]"
        if keys is not None and key not in keys:
            problems.append(FieldViolation(name, "not a question of this form"))
        if target not in CRM_FIELDS and not _CUSTOM.match(target):
            problems.append(
                FieldViolation(
                    name, "must be nome, email, telefone, empresa, cargo, cidade or custom:<id>"
                )
            )
        elif _CUSTOM.match(target) and custom is not None and target not in custom:
            problems.append(FieldViolation(name, "not a custom field of the CRM directory"))
        elif target in used:
            problems.append(FieldViolation(name, f"'{target}' is already mapped"))
        used.add(target)


def _validate_tags(tags: list[str], problems: list[FieldViolation]) -> list[str]:
    clean = list(dict.fromkeys(t.strip() for t in tags))
    if len(clean) > MAX_TAGS:
        problems.append(FieldViolation("mapping.tags_automaticas", f"at most {MAX_TAGS} tags"))
    if any(not t or len(t) > MAX_TAG_LEN for t in clean):
        problems.append(
            FieldViolation("mapping.tags_automaticas", f"tags are 1-{MAX_TAG_LEN} characters")
        )
    return clean


async def _questions(deps: Deps, caller: Caller, data: MappingInput) -> tuple[str, list[str]]:
    """The form's name and question keys, from Meta; raises a violation if not the page's."""
    forms = await page_forms(deps, caller, data.page_id)
    form = next((f for f in forms if f.id == data.form_id), None)
    if form is None:
        raise InvalidArgument.field("mapping.form_id", "not a Lead Ads form of this page")
    return form.name, [q.key for q in form.questions]


async def create(deps: Deps, caller: Caller, data: MappingInput) -> LeadAdsForm:
    problems: list[FieldViolation] = []
    if not data.page_id:
        problems.append(FieldViolation("mapping.page_id", "required"))
    if not data.form_id:
        problems.append(FieldViolation("mapping.form_id", "required"))
    if problems:
        raise InvalidArgument("invalid mapping", problems)
    form_name, keys = await _questions(deps, caller, data)
    async with deps.db.unit_of_work(caller) as session:
        page = await session.scalar(
            select(MetaPage).where(MetaPage.page_id == data.page_id, MetaPage.ativo.is_(True))
        )
        funil, etapa, owner = await _validate_destination(session, data, problems)
        _validate_fields(data.mapeamento_campos, keys, problems, await custom_targets(session))
        tags = _validate_tags(data.tags_automaticas, problems)
        if problems:
            raise InvalidArgument("invalid mapping", problems)
        assert page is not None  # page_forms checked it is selected
        row = await session.scalar(select(LeadAdsForm).where(LeadAdsForm.form_id == data.form_id))
        if row is not None and row.deletado_em is None:
            raise MappingExists(f"form {data.form_id} is already mapped")
        if row is None:
            row = LeadAdsForm(organizacao_id=caller.require_tenant(), form_id=data.form_id)
            session.add(row)
        # A removed mapping of the same form comes back (one row per form, spec UNIQUE).
        row.pagina_id, row.deletado_em = page.id, None
        row.form_name = data.form_name or form_name
        row.funil_id, row.etapa_destino_id, row.owner_id = funil, etapa, owner
        row.mapeamento_campos = dict(data.mapeamento_campos)
        row.criar_oportunidade, row.notificar_owner = data.criar_oportunidade, data.notificar_owner
        row.tags_automaticas, row.ativo = tags, data.ativo
        await session.flush()
        released = (
            await release_unmapped_leads(session, row.organizacao_id, row.form_id, row.id)
            if row.ativo
            else 0
        )
        await record_audit(
            session,
            caller,
            "meta.mapping_created",
            entity_type="formularios_lead_ads",
            entity_id=row.id,
            details={
                "form_id": data.form_id,
                "fields": sorted(data.mapeamento_campos),
                "leads_liberados": released,
            },
        )
    return row


async def get(session: AsyncSession, mapping_id: str) -> LeadAdsForm:
    try:
        key = uuid.UUID(mapping_id)
    except ValueError as exc:
        raise InvalidArgument.field("id", "must be a UUID") from exc
    row = await session.scalar(
        select(LeadAdsForm).where(LeadAdsForm.id == key, LeadAdsForm.deletado_em.is_(None))
    )
    if row is None:
        raise MappingNotFound(f"no form mapping {mapping_id}")
    return row


async def update(
    deps: Deps, caller: Caller, mapping_id: str, data: MappingInput, paths: set[str]
) -> LeadAdsForm:
    bad = sorted(paths - WRITABLE)
    if bad:
        why = "immutable" if set(bad) & IMMUTABLE else "not a writable field"
        raise InvalidArgument(
            "invalid update_mask",
            [FieldViolation("update_mask", f"{p}: {why}") for p in bad],
        )
    async with deps.db.unit_of_work(caller) as session:
        row = await get(session, mapping_id)
        page = await session.get(MetaPage, row.pagina_id)
    merged = MappingInput(
        page_id=page.page_id if page else "",
        form_id=row.form_id,
        form_name=data.form_name if "form_name" in paths else row.form_name or "",
        funil_id=data.funil_id if "funil_id" in paths else str(row.funil_id or ""),
        etapa_destino_id=(
            data.etapa_destino_id
            if "etapa_destino_id" in paths
            else str(row.etapa_destino_id or "")
        ),
        owner_id=data.owner_id if "owner_id" in paths else str(row.owner_id or ""),
        mapeamento_campos=(
            data.mapeamento_campos if "mapeamento_campos" in paths else dict(row.mapeamento_campos)
        ),
    )
    problems: list[FieldViolation] = []
    keys = None
    if "mapeamento_campos" in paths:
        _, keys = await _questions(deps, caller, merged)
    async with deps.db.unit_of_work(caller) as session:
        row = await get(session, mapping_id)
        funil, etapa, owner = await _validate_destination(session, merged, problems)
        _validate_fields(merged.mapeamento_campos, keys, problems, await custom_targets(session))
        tags = _validate_tags(
            data.tags_automaticas if "tags_automaticas" in paths else row.tags_automaticas or [],
            problems,
        )
        if problems:
            raise InvalidArgument("invalid mapping", problems)
        row.form_name = merged.form_name
        row.funil_id, row.etapa_destino_id, row.owner_id = funil, etapa, owner
        row.mapeamento_campos = dict(merged.mapeamento_campos)
        row.tags_automaticas = tags
        for flag in ("criar_oportunidade", "notificar_owner", "ativo"):
            if flag in paths:
                setattr(row, flag, getattr(data, flag))
        row.atualizado_em = func.now()
        await session.flush()
        released = (
            await release_unmapped_leads(session, row.organizacao_id, row.form_id, row.id)
            if row.ativo
            else 0
        )
        await record_audit(
            session,
            caller,
            "meta.mapping_updated",
            entity_type="formularios_lead_ads",
            entity_id=row.id,
            details={"fields": sorted(paths), "leads_liberados": released},
        )
        await session.refresh(row)
    return row


async def delete(deps: Deps, caller: Caller, mapping_id: str) -> None:
    async with deps.db.unit_of_work(caller) as session:
        row = await get(session, mapping_id)
        row.deletado_em, row.ativo = func.now(), False
        await record_audit(
            session,
            caller,
            "meta.mapping_deleted",
            entity_type="formularios_lead_ads",
            entity_id=row.id,
            details={"form_id": row.form_id},
        )
