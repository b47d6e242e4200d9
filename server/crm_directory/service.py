"""CrmDirectoryService: the thin servicer (proto <-> the directory's mirrors).

Writes come from the CRM core with the service identity and act on the tenant its token
names; each runs in one unit of work (a batch is all or nothing) under AIP-155 request ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from renove.conexoes.v1 import crm_directory_service_pb2 as pb
from renove.conexoes.v1 import crm_directory_service_pb2_grpc as pb_grpc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User
from server.audiences import remove_contact
from server.bootstrap import Deps
from server.crm_directory import contacts, fields, inputs, pipelines, users, views
from server.errors import FieldViolation, InvalidArgument
from server.idempotency import answer_in, idempotent
from server.interceptors.context import current_caller
from server.paging import decode_token, encode_token, offset_of, page_size

_MAX_PAGE = 100
R = TypeVar("R", bound=Message)
Apply = Callable[[AsyncSession, uuid.UUID], Awaitable[R]]


def _results(ids: Sequence[object], applied: Sequence[bool]) -> list[pb.DirectoryWrite]:
    return [pb.DirectoryWrite(id=str(i), applied=a) for i, a in zip(ids, applied, strict=True)]


async def _check_owners(
    session: AsyncSession, values: Sequence[contacts.ContactValues], name: str, single: bool
) -> None:
    owners = {v.owner_id for v in values if v.owner_id is not None}
    known = set(await session.scalars(select(User.id).where(User.id.in_(owners))))
    problems = [
        FieldViolation(
            f"{inputs.prefix_of(name, i, single)}owner_id", "no such user in the directory"
        )
        for i, v in enumerate(values)
        if v.owner_id is not None and v.owner_id not in known
    ]
    if problems:
        raise InvalidArgument("invalid directory write", problems)


class CrmDirectoryServicer(pb_grpc.CrmDirectoryServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def _write(self, apply: Apply[R]) -> R:
        """One unit of work, its answer stored with it (the RPCs are `@idempotent`)."""
        caller = current_caller()
        tenant = caller.require_tenant()
        async with self.deps.db.unit_of_work(caller) as session:
            response = await apply(session, tenant)
            await answer_in(session, response)
            return response

    # -- users ------------------------------------------------------------------------------

    async def _users(self, session: AsyncSession, tenant: uuid.UUID, items: Any) -> list[bool]:
        values = inputs.batch(items, "users", inputs.user, users.problems_of, lambda v: v.id)
        return [await users.upsert_user(session, tenant, v) for v in values]

    @idempotent
    async def UpsertCrmUser(
        self, request: pb.UpsertCrmUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertCrmUserResponse:
        async def apply(session: AsyncSession, tenant: uuid.UUID) -> pb.UpsertCrmUserResponse:
            values = inputs.batch(
                [request.user], "user", inputs.user, users.problems_of, id, single=True
            )
            applied = await users.upsert_user(session, tenant, values[0])
            return pb.UpsertCrmUserResponse(result=_results([values[0].id], [applied])[0])

        return await self._write(apply)

    @idempotent
    async def BatchUpsertCrmUsers(
        self, request: pb.BatchUpsertCrmUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchUpsertCrmUsersResponse:
        async def apply(session: AsyncSession, tenant: uuid.UUID) -> pb.BatchUpsertCrmUsersResponse:
            applied = await self._users(session, tenant, request.users)
            ids = [u.id for u in request.users]
            return pb.BatchUpsertCrmUsersResponse(results=_results(ids, applied))

        return await self._write(apply)

    @idempotent
    async def DeleteCrmUser(
        self, request: pb.DeleteCrmUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteCrmUserResponse:
        async def apply(session: AsyncSession, tenant: uuid.UUID) -> pb.DeleteCrmUserResponse:
            user_id, stamp = _deletion(request)
            applied = await users.delete_user(session, tenant, user_id, stamp)
            return pb.DeleteCrmUserResponse(
                result=pb.DirectoryWrite(id=str(user_id), applied=applied)
            )

        return await self._write(apply)

    # -- pipelines --------------------------------------------------------------------------

    async def _pipelines(
        self, session: AsyncSession, tenant: uuid.UUID, items: Any, name: str, single: bool
    ) -> list[bool]:
        values = inputs.batch(
            items, name, inputs.pipeline, pipelines.problems_of, lambda v: v.id, single=single
        )
        applied, problems = [], []
        for i, value in enumerate(values):
            prefix = inputs.prefix_of(name, i, single)
            done, found = await pipelines.upsert_pipeline(session, tenant, value, prefix)
            applied.append(done)
            problems.extend(found)
        if problems:
            raise InvalidArgument("invalid directory write", problems)
        return applied

    @idempotent
    async def UpsertCrmPipeline(
        self, request: pb.UpsertCrmPipelineRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertCrmPipelineResponse:
        async def apply(session: AsyncSession, tenant: uuid.UUID) -> pb.UpsertCrmPipelineResponse:
            applied = await self._pipelines(session, tenant, [request.pipeline], "pipeline", True)
            return pb.UpsertCrmPipelineResponse(
                result=pb.DirectoryWrite(id=request.pipeline.id, applied=applied[0])
            )

        return await self._write(apply)

    @idempotent
    async def BatchUpsertCrmPipelines(
        self, request: pb.BatchUpsertCrmPipelinesRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchUpsertCrmPipelinesResponse:
        async def apply(
            session: AsyncSession, tenant: uuid.UUID
        ) -> pb.BatchUpsertCrmPipelinesResponse:
            applied = await self._pipelines(session, tenant, request.pipelines, "pipelines", False)
            ids = [p.id for p in request.pipelines]
            return pb.BatchUpsertCrmPipelinesResponse(results=_results(ids, applied))

        return await self._write(apply)

    @idempotent
    async def DeleteCrmPipeline(
        self, request: pb.DeleteCrmPipelineRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteCrmPipelineResponse:
        async def apply(session: AsyncSession, tenant: uuid.UUID) -> pb.DeleteCrmPipelineResponse:
            pipeline_id, stamp = _deletion(request)
            applied = await pipelines.delete_pipeline(session, tenant, pipeline_id, stamp)
            return pb.DeleteCrmPipelineResponse(
                result=pb.DirectoryWrite(id=str(pipeline_id), applied=applied)
            )

        return await self._write(apply)

    # -- custom fields ----------------------------------------------------------------------

    async def _fields(
        self, session: AsyncSession, tenant: uuid.UUID, items: Any, name: str, single: bool
    ) -> list[bool]:
        values = inputs.batch(
            items, name, inputs.custom_field, fields.problems_of, lambda v: v.id, single=single
        )
        return [await fields.upsert_field(session, tenant, v) for v in values]

    @idempotent
    async def UpsertCrmCustomField(
        self, request: pb.UpsertCrmCustomFieldRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertCrmCustomFieldResponse:
        async def apply(
            session: AsyncSession, tenant: uuid.UUID
        ) -> pb.UpsertCrmCustomFieldResponse:
            applied = await self._fields(session, tenant, [request.field], "field", True)
            return pb.UpsertCrmCustomFieldResponse(
                result=pb.DirectoryWrite(id=request.field.id, applied=applied[0])
            )

        return await self._write(apply)

    @idempotent
    async def BatchUpsertCrmCustomFields(
        self, request: pb.BatchUpsertCrmCustomFieldsRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchUpsertCrmCustomFieldsResponse:
        async def apply(
            session: AsyncSession, tenant: uuid.UUID
        ) -> pb.BatchUpsertCrmCustomFieldsResponse:
            applied = await self._fields(session, tenant, request.fields, "fields", False)
            ids = [f.id for f in request.fields]
            return pb.BatchUpsertCrmCustomFieldsResponse(results=_results(ids, applied))

        return await self._write(apply)

    @idempotent
    async def DeleteCrmCustomField(
        self, request: pb.DeleteCrmCustomFieldRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteCrmCustomFieldResponse:
        async def apply(
            session: AsyncSession, tenant: uuid.UUID
        ) -> pb.DeleteCrmCustomFieldResponse:
            field_id = request.id.strip()
            if not fields.FIELD_ID.match(field_id):
                raise InvalidArgument.field("id", "1-64 letters, digits, '_' or '-'")
            stamp = inputs.when(request.updated_at, request.HasField("updated_at"))
            inputs.require_stamp(stamp)
            applied = await fields.delete_field(session, tenant, field_id, stamp)
            return pb.DeleteCrmCustomFieldResponse(
                result=pb.DirectoryWrite(id=field_id, applied=applied)
            )

        return await self._write(apply)

    # -- contacts ---------------------------------------------------------------------------

    async def _contacts(
        self, session: AsyncSession, tenant: uuid.UUID, items: Any, name: str, single: bool
    ) -> list[bool]:
        values = inputs.batch(
            items,
            name,
            inputs.contact,
            lambda v, p: contacts.normalized(v, p)[1],
            lambda v: v.id,
            single=single,
        )
        await _check_owners(session, values, name, single)
        applied = []
        for i, v in enumerate(values):
            written = await contacts.upsert_contact(
                session, tenant, v, prefix=inputs.prefix_of(name, i, single)
            )
            if written.consent_withdrawn:  # leaves every Custom Audience at Meta
                await remove_contact(session, tenant, v.id)
            applied.append(written.applied)
        return applied

    @idempotent
    async def UpsertCrmContact(
        self, request: pb.UpsertCrmContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertCrmContactResponse:
        async def apply(session: AsyncSession, tenant: uuid.UUID) -> pb.UpsertCrmContactResponse:
            applied = await self._contacts(session, tenant, [request.contact], "contact", True)
            return pb.UpsertCrmContactResponse(
                result=pb.DirectoryWrite(id=request.contact.id, applied=applied[0])
            )

        return await self._write(apply)

    @idempotent
    async def BatchUpsertCrmContacts(
        self, request: pb.BatchUpsertCrmContactsRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchUpsertCrmContactsResponse:
        async def apply(
            session: AsyncSession, tenant: uuid.UUID
        ) -> pb.BatchUpsertCrmContactsResponse:
            applied = await self._contacts(session, tenant, request.contacts, "contacts", False)
            ids = [c.id for c in request.contacts]
            return pb.BatchUpsertCrmContactsResponse(results=_results(ids, applied))

        return await self._write(apply)

    @idempotent
    async def DeleteCrmContact(
        self, request: pb.DeleteCrmContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteCrmContactResponse:
        async def apply(session: AsyncSession, tenant: uuid.UUID) -> pb.DeleteCrmContactResponse:
            contact_id, stamp = _deletion(request)
            written = await contacts.delete_contact(session, tenant, contact_id, stamp)
            if written.applied:  # a deleted contact leaves every Custom Audience at Meta
                await remove_contact(session, tenant, contact_id)
            return pb.DeleteCrmContactResponse(
                result=pb.DirectoryWrite(id=str(contact_id), applied=written.applied)
            )

        return await self._write(apply)

    # -- reads ------------------------------------------------------------------------------

    async def ListCrmPipelines(
        self, request: pb.ListCrmPipelinesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCrmPipelinesResponse:
        size = min(page_size(request.page_size), _MAX_PAGE)
        cursor = decode_token(request.page_token)
        after = None
        if cursor is not None:
            try:
                ordem, ident = cursor["o"], cursor["i"]
                if isinstance(ordem, bool) or not isinstance(ordem, int):
                    raise ValueError("ordem is not an integer")
                if not -(2**31) <= ordem < 2**31 or not isinstance(ident, str):
                    raise ValueError("out of range")
                after = (ordem, uuid.UUID(ident))
            except (KeyError, ValueError) as exc:
                raise InvalidArgument.field("page_token", "not a token this API issued") from exc
        async with self.deps.db.unit_of_work(current_caller()) as session:
            found = await pipelines.list_pipelines(session, after=after, limit=size + 1)
        page, more = found[:size], len(found) > size
        token = encode_token({"o": page[-1].ordem, "i": str(page[-1].id)}) if more else ""
        return pb.ListCrmPipelinesResponse(
            pipelines=[views.pipeline(p) for p in page], next_page_token=token
        )

    async def ListCrmFields(
        self, request: pb.ListCrmFieldsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCrmFieldsResponse:
        size = min(page_size(request.page_size), _MAX_PAGE)
        cursor = decode_token(request.page_token)
        start = offset_of(cursor)
        async with self.deps.db.unit_of_work(current_caller()) as session:
            found = await fields.mappable_fields(session)
        page = found[start : start + size]
        token = encode_token({"o": start + size}) if start + size < len(found) else ""
        return pb.ListCrmFieldsResponse(
            fields=[views.field(f) for f in page], next_page_token=token
        )


def _deletion(request: Any) -> tuple[uuid.UUID, Any]:
    problems: list[FieldViolation] = []
    record_id = inputs.uuid_of(request.id, "id", problems)
    if problems:
        raise InvalidArgument("invalid directory write", problems)
    stamp = inputs.when(request.updated_at, request.HasField("updated_at"))
    inputs.require_stamp(stamp)
    return record_id, stamp


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_CrmDirectoryServiceServicer_to_server(CrmDirectoryServicer(deps), server)
    return "renove.conexoes.v1.CrmDirectoryService"
