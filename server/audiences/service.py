"""AudiencesService: the thin servicer (proto <-> the Custom Audiences room). Admin only,
enforced by the permission interceptor before any of this."""

from __future__ import annotations

import uuid

import grpc
from renove.conexoes.v1 import audiences_service_pb2 as pb
from renove.conexoes.v1 import audiences_service_pb2_grpc as pb_grpc
from sqlalchemy import ColumnElement, func, select

from db.models import Contact, CustomAudience, CustomAudienceMember, PendingEvent
from server.audiences import manage, views
from server.audiences.errors import AudienceInactive, SyncInProgress
from server.audiences.jobs import register_jobs as _register_jobs
from server.audiences.sync import matching_contacts
from server.audit import record_audit
from server.bootstrap import Deps
from server.idempotency import answer_in, caller_key, idempotent
from server.interceptors.context import current_caller
from server.paging import (
    decode_token,
    encode_token,
    keyset_after,
    keyset_page,
    offset_of,
    page_size,
)
from server.resilience.jobs import enqueue
from server.resilience.operations import AUDIENCE_SYNC

_MAX_AUDIENCES = 200


def _input(a: pb.Audience) -> manage.AudienceInput:
    sync = views.SYNC_WORDS.get(a.tipo_sincronizacao, "evento")
    return manage.AudienceInput(
        audience_name=a.audience_name,
        description=a.description.strip(),
        ad_account_id=a.ad_account_id.strip(),
        tipo_sincronizacao=sync,
        evento_gatilho=views.TRIGGER_WORDS.get(a.evento_gatilho),
        ativo=a.ativo if a.HasField("ativo") else True,
        customer_file_source=a.customer_file_source.strip() or "USER_PROVIDED_ONLY",
    )


def _present(a: pb.Audience) -> set[str]:
    return {f.name for f, _ in a.ListFields()} & manage.WRITABLE


def _offset(token: str) -> int:
    return offset_of(decode_token(token))


class AudiencesServicer(pb_grpc.AudiencesServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def ListAdAccounts(
        self, request: pb.ListAdAccountsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAdAccountsResponse:
        accounts = await manage.ad_accounts(self.deps, current_caller())
        start, size = _offset(request.page_token), min(page_size(request.page_size), 100)
        chunk = accounts[start : start + size]
        more = start + size < len(accounts)
        return pb.ListAdAccountsResponse(
            ad_accounts=[views.ad_account(a) for a in chunk],
            next_page_token=encode_token({"o": start + size}) if more else "",
        )

    async def ListAudiences(
        self, request: pb.ListAudiencesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAudiencesResponse:
        start, size = _offset(request.page_token), min(page_size(request.page_size), _MAX_AUDIENCES)
        where: list[ColumnElement[bool]] = [
            CustomAudience.deletado_em.is_(None),
            CustomAudience.estado == "ready",
        ]
        if request.ad_account_id:
            where.append(CustomAudience.ad_account_id == request.ad_account_id.strip())
        if request.HasField("ativo"):
            where.append(
                CustomAudience.ativo.is_not(False)
                if request.ativo
                else CustomAudience.ativo.is_(False)
            )
        async with self.deps.db.unit_of_work(current_caller()) as session:
            total = await session.scalar(select(func.count(CustomAudience.id)).where(*where))
            rows = list(
                await session.scalars(
                    select(CustomAudience)
                    .where(*where)
                    .order_by(CustomAudience.criado_em, CustomAudience.id)
                    .offset(start)
                    .limit(size)
                )
            )
            pending = await manage.pending_counts(session, [r.id for r in rows])
        more = start + size < int(total or 0)
        return pb.ListAudiencesResponse(
            audiences=[views.audience(r, pending.get(r.id, 0)) for r in rows],
            next_page_token=encode_token({"o": start + size}) if more else "",
            total_size=int(total or 0),
        )

    @idempotent
    async def CreateAudience(
        self, request: pb.CreateAudienceRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateAudienceResponse:
        values = _input(request.audience)
        manage.validate(values, {"audience_name", "ad_account_id"})
        row = await manage.create(
            self.deps,
            current_caller(),
            values,
            f"{caller_key(current_caller())}:{request.request_id}" if request.request_id else None,
        )
        return pb.CreateAudienceResponse(audience=views.audience(row))

    async def GetAudience(
        self, request: pb.GetAudienceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAudienceResponse:
        async with self.deps.db.unit_of_work(current_caller()) as session:
            row = await manage.get(session, request.id)
            pending = await manage.pending_counts(session, [row.id])
            return pb.GetAudienceResponse(audience=views.audience(row, pending.get(row.id, 0)))

    @idempotent
    async def UpdateAudience(
        self, request: pb.UpdateAudienceRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateAudienceResponse:
        caller = current_caller()
        paths = (
            {p.removeprefix("audience.") for p in request.update_mask.paths}
            if request.update_mask.paths
            else _present(request.audience)
        )
        row = await manage.update(self.deps, caller, request.id, _input(request.audience), paths)
        return pb.UpdateAudienceResponse(audience=views.audience(row))

    @idempotent
    async def DeleteAudience(
        self, request: pb.DeleteAudienceRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteAudienceResponse:
        caller = current_caller()
        assert caller.tenant_id is not None
        response = pb.DeleteAudienceResponse()
        async with self.deps.db.unit_of_work(caller) as session:
            row = await manage.get(session, request.id)
            await manage.delete(session, caller.tenant_id, row, request.delete_on_meta)
            await record_audit(
                session,
                caller,
                "audience.deleted",
                entity_type="custom_audiences_meta",
                entity_id=row.id,
                details={"audience_id": row.audience_id, "at_meta": request.delete_on_meta},
            )
            await answer_in(session, response)
        return response

    @idempotent
    async def SyncAudience(
        self, request: pb.SyncAudienceRequest, context: grpc.aio.ServicerContext
    ) -> pb.SyncAudienceResponse:
        caller = current_caller()
        assert caller.tenant_id is not None
        async with self.deps.db.unit_of_work(caller) as session:
            row = await manage.get(session, request.id)
            if row.ativo is False:
                raise AudienceInactive("the audience is deactivated; activate it first")
            running = await session.scalar(
                select(PendingEvent.id).where(
                    PendingEvent.operacao == AUDIENCE_SYNC.name,
                    PendingEvent.destino == str(row.id),
                    PendingEvent.status == "processing",
                )
            )
            if running is not None:
                raise SyncInProgress("a sync of this audience is running; try again shortly")
            if request.full_resync:
                matching = matching_contacts(row).subquery()
                members = await session.scalar(select(func.count()).select_from(matching))
            else:
                members = (await manage.pending_counts(session, [row.id])).get(row.id, 0)
            job_id = await enqueue(
                session,
                tenant_id=caller.tenant_id,
                operation=AUDIENCE_SYNC,
                payload={"audience_id": str(row.id), "full_resync": request.full_resync},
                idempotency_key=f"audience-sync:{row.id}:{request.request_id or uuid.uuid4()}",
                destino=str(row.id),
            )
            response = pb.SyncAudienceResponse(
                job_id=str(job_id or ""),
                membros_a_sincronizar=int(members or 0),
                audience=views.audience(row),
            )
            await answer_in(session, response)
            return response

    async def ListAudienceMembers(
        self, request: pb.ListAudienceMembersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAudienceMembersResponse:
        size = page_size(request.page_size)
        async with self.deps.db.unit_of_work(current_caller()) as session:
            row = await manage.get(session, request.id)
            where: list[ColumnElement[bool]] = [CustomAudienceMember.audience_id == row.id]
            if request.HasField("sincronizado"):
                where.append(
                    CustomAudienceMember.sincronizado.is_(True)
                    if request.sincronizado
                    else CustomAudienceMember.sincronizado.is_not(True)
                )
            total = await session.scalar(select(func.count(CustomAudienceMember.id)).where(*where))
            query = (
                select(CustomAudienceMember, Contact.nome)
                .join(Contact, Contact.id == CustomAudienceMember.contato_id)
                .where(*where)
            )
            after = keyset_after(
                request.page_token,
                (("t", "time"), ("i", "uuid")),
                (CustomAudienceMember.criado_em, CustomAudienceMember.id),
                descending=True,
            )
            if after is not None:
                query = query.where(after)
            found = list(
                await session.execute(
                    query.order_by(
                        CustomAudienceMember.criado_em.desc(), CustomAudienceMember.id.desc()
                    ).limit(size + 1)
                )
            )
        page, next_token = keyset_page(
            found, size, lambda r: {"t": r[0].criado_em.isoformat(), "i": str(r[0].id)}
        )
        return pb.ListAudienceMembersResponse(
            members=[views.member(m, nome) for m, nome in page],
            next_page_token=next_token,
            total_size=int(total or 0),
        )


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_AudiencesServiceServicer_to_server(AudiencesServicer(deps), server)
    return "renove.conexoes.v1.AudiencesService"


register_jobs = _register_jobs
