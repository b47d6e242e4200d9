"""AIP-155 request ids, declared once per RPC: ``@idempotent`` on a servicer method.

A mutating RPC whose request carries ``request_id`` answers a repeat with its first response and
does its work once. The slot is keyed by the caller (tenant, and user or service identity), the
full RPC name (``/renove.conexoes.v1.WhatsAppService/SendWhatsAppMessage``, read from the
request's own descriptor) and the request id. The stored fingerprint of the request is an
HMAC keyed from the encryption keyring, so a stored row reveals nothing about secrets the
request carried. The same request id with a different request is refused with
``FAILED_PRECONDITION`` / ``REQUEST_ID_REUSED``.

The slot's life:

1. held: the running attempt holds a PostgreSQL advisory lock named by the slot for the whole
   RPC (`Database.session_lock`: the process's locks live on one connection of its own), and
   the slot's row is committed (no response yet); a concurrent repeat meanwhile gets ``ABORTED`` /
   ``REQUEST_IN_PROGRESS`` with RetryInfo, so the work never runs twice at once;
2. answered (the serialized response stored) when the RPC returns;
3. released (deleted) when the RPC raises, so a retry runs it again: errors are not replayed;
4. an unanswered row whose lock nobody holds was left by an attempt that died (its process
   killed, its connection cut): PostgreSQL dropped the lock with the session, so the next
   repeat takes the slot over at once.

An RPC whose work ends in one transaction calls ``await answer_in(tx, response)`` in it: the
answer then commits with the work (a crash in between can neither lose the answer nor let a
retry do the work again). Otherwise the decorator stores the answer right after the RPC returns.

The decorated method must live on a servicer holding ``self.deps`` (Deps). A contract test
(tests/unit/test_idempotent_rpcs.py) fails when an RPC of a built room takes a ``request_id``
and is not decorated.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import hmac
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import IdempotencyRecord
from db.uow import Database
from server.auth.caller import Caller
from server.errors import Aborted, FailedPrecondition, InvalidArgument
from server.interceptors.context import current_caller
from server.security.cipher import Keyring

_log = logging.getLogger(__name__)

MAX_REQUEST_ID = 100
# Keys the digest that names a slot's advisory lock (one bigint key: the slot's whole identity).
_LOCK_PURPOSE = b"renove-conexoes/idempotency-slot/v1"
_FINGERPRINT_PURPOSE = "renove-conexoes/idempotency-fingerprint/v1"
MARKER = "__idempotent__"


class RequestIdReused(FailedPrecondition):
    reason = "REQUEST_ID_REUSED"


class RequestInProgress(Aborted):
    reason = "REQUEST_IN_PROGRESS"


class _HasDeps(Protocol):
    @property
    def deps(self) -> Any: ...


S = TypeVar("S", bound=_HasDeps)
Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
RpcMethod = Callable[[S, Req, Any], Awaitable[Resp]]


@dataclass(frozen=True)
class Slot:
    tenant_id: uuid.UUID | None
    caller: str
    rpc: str
    request_id: str


def caller_key(caller: Caller) -> str:
    """The identity part of the slot: the user, or the service role when there is none."""
    return f"user:{caller.user_id}" if caller.user_id is not None else caller.role.value


_METHODS: dict[str, MethodDescriptor] = {}


def method_of(request_type: Any) -> MethodDescriptor:
    """The RPC whose input is `request_type` (AIP: one `<Rpc>Request` per RPC)."""
    found = _METHODS.get(request_type.full_name)
    if found is None:
        for service in request_type.file.services_by_name.values():
            for method in service.methods:
                if method.input_type.full_name == request_type.full_name:
                    found = method
        if found is None:
            raise LookupError(f"no RPC takes {request_type.full_name}")
        _METHODS[request_type.full_name] = found
    return found


def rpc_name(request: Message) -> str:
    method = method_of(request.DESCRIPTOR)
    return f"/{method.containing_service.full_name}/{method.name}"


def fingerprint(keyring: Keyring, request: Message, key_id: str | None = None) -> str | None:
    """`<key id>:<HMAC-SHA256 of the deterministic serialization>`; None if the key is gone."""
    derived = keyring.derived_key(_FINGERPRINT_PURPOSE, key_id)
    if derived is None:
        return None
    kid, key = derived
    digest = hmac.new(key, request.SerializeToString(deterministic=True), hashlib.sha256)
    return f"{kid}:{digest.hexdigest()}"


def _same_request(keyring: Keyring, request: Message, stored: str | None) -> bool:
    if not stored or ":" not in stored:
        return False
    expected = fingerprint(keyring, request, stored.split(":", 1)[0])
    # A slot fingerprinted with a key since removed from the ring cannot be checked: the
    # replay wins over a refusal (a retry must never do the work twice).
    return expected is None or hmac.compare_digest(expected, stored)


def lock_key(slot: Slot) -> int:
    """The slot's advisory lock: a signed 64-bit digest of its identity."""
    identity = "\x1f".join((str(slot.tenant_id or ""), slot.caller, slot.rpc, slot.request_id))
    digest = hashlib.blake2b(identity.encode(), digest_size=8, key=_LOCK_PURPOSE).digest()
    return int.from_bytes(digest, "big", signed=True)


class IdempotencyStore:
    """The slots in `idempotency_records`, one short transaction per step; a running attempt
    holds its slot's advisory lock for as long as it runs (`hold`)."""

    def __init__(self, db: Database, keyring: Keyring) -> None:
        self._db = db
        self._keyring = keyring

    @asynccontextmanager
    async def hold(
        self, caller: Caller, slot: Slot, request: Message, response_type: type[Resp]
    ) -> AsyncIterator[Resp | None]:
        """Holds the slot for the block, or yields the first response when the request was
        answered before (the block then must not run the work).

        Raises:
            RequestIdReused: the slot holds a different request.
            RequestInProgress: an attempt holding the slot is still running.
        """
        async with self._db.session_lock(lock_key(slot)) as locked:
            yield await self._claim(caller, slot, request, response_type, locked=locked)

    async def _claim(
        self,
        caller: Caller,
        slot: Slot,
        request: Message,
        response_type: type[Resp],
        *,
        locked: bool,
    ) -> Resp | None:
        digest = fingerprint(self._keyring, request)
        async with self._db.unit_of_work(caller) as tx:
            if locked:
                inserted = await tx.scalar(
                    insert(IdempotencyRecord)
                    .values(
                        organizacao_id=slot.tenant_id,
                        caller=slot.caller,
                        rpc=slot.rpc,
                        request_id=slot.request_id,
                        request_hash=digest,
                    )
                    .on_conflict_do_nothing()
                    .returning(IdempotencyRecord.id)
                )
                if inserted is not None:
                    return None
            prior = (
                await tx.execute(
                    select(
                        IdempotencyRecord.id,
                        IdempotencyRecord.request_hash,
                        IdempotencyRecord.response,
                    ).where(*_matches(slot))
                )
            ).one_or_none()
            if prior is None:  # the lock's holder has not written its row yet
                raise RequestInProgress(
                    "a request with this request_id is still running", retry_after=1.0
                )
            if not _same_request(self._keyring, request, prior.request_hash):
                raise RequestIdReused(
                    "request_id was already used for a different request",
                    metadata={"request_id": slot.request_id},
                )
            if prior.response is not None:
                return response_type.FromString(prior.response)
            if not locked:
                raise RequestInProgress(
                    "a request with this request_id is still running", retry_after=1.0
                )
            # Unanswered and its lock was free: the attempt that wrote it died. Ours now.
            await tx.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.id == prior.id)
                .values(claimed_at=func.now())
            )
            return None

    async def answer(self, caller: Caller, slot: Slot, response: Message) -> None:
        async with self._db.unit_of_work(caller) as tx:
            await tx.execute(
                update(IdempotencyRecord)
                .where(*_matches(slot))
                .values(response=response.SerializeToString(deterministic=True))
            )

    async def release(self, caller: Caller, slot: Slot) -> None:
        async with self._db.unit_of_work(caller) as tx:
            await tx.execute(
                delete(IdempotencyRecord).where(
                    *_matches(slot), IdempotencyRecord.response.is_(None)
                )
            )


@dataclass
class _Running:
    slot: Slot
    answered: bool = False


_running: contextvars.ContextVar[_Running | None] = contextvars.ContextVar(
    "idempotent_rpc", default=None
)


async def answer_in(tx: AsyncSession, response: Message) -> None:
    """Stores the running RPC's answer in `tx`, the unit of work that does its work, so both
    commit together. Does nothing outside an `@idempotent` RPC called with a request_id."""
    running = _running.get()
    if running is None:
        return
    await tx.execute(
        update(IdempotencyRecord)
        .where(*_matches(running.slot))
        .values(response=response.SerializeToString(deterministic=True))
    )
    running.answered = True


def _matches(slot: Slot) -> tuple[Any, ...]:
    return (
        IdempotencyRecord.organizacao_id.is_not_distinct_from(slot.tenant_id),
        IdempotencyRecord.caller == slot.caller,
        IdempotencyRecord.rpc == slot.rpc,
        IdempotencyRecord.request_id == slot.request_id,
    )


def idempotent(method: RpcMethod[S, Req, Resp]) -> RpcMethod[S, Req, Resp]:
    """Makes a servicer method honour its request's `request_id` (see the module docstring)."""

    @functools.wraps(method)
    async def call(self: S, request: Req, context: Any) -> Resp:
        request_id = str(getattr(request, "request_id", ""))
        if not request_id:
            return await method(self, request, context)
        if len(request_id) > MAX_REQUEST_ID:
            raise InvalidArgument.field("request_id", f"at most {MAX_REQUEST_ID} characters")
        caller = current_caller()
        slot = Slot(caller.tenant_id, caller_key(caller), rpc_name(request), request_id)
        response_type = cast(
            "type[Resp]", GetMessageClass(method_of(request.DESCRIPTOR).output_type)
        )
        store = IdempotencyStore(self.deps.db, self.deps.keyring)
        async with store.hold(caller, slot, request, response_type) as prior:
            if prior is not None:
                return prior
            running = _Running(slot)
            token = _running.set(running)
            try:
                response = await method(self, request, context)
            except BaseException:
                await asyncio.shield(_release_quietly(store, caller, slot))
                raise
            finally:
                _running.reset(token)
            if not running.answered:
                await store.answer(caller, slot, response)
            return response

    setattr(call, MARKER, True)
    return call


async def _release_quietly(store: IdempotencyStore, caller: Caller, slot: Slot) -> None:
    try:
        await store.release(caller, slot)
    except Exception:
        # The database is down too: the row stays unanswered, and the lock that marked it
        # running goes with this block, so the next repeat takes the slot over.
        _log.warning("could not release request id slot %s %s", slot.rpc, slot.request_id)
