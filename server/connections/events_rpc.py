"""WatchEvents: the live stream of what happens to the caller's connections.

The stream subscribes to the bus *before* reading the snapshot, so nothing that happens
between the two is missed (at worst an event repeats something the snapshot shows). Then
every event the caller may see, and a heartbeat after each idle `stream_heartbeat_seconds`.
It ends when the client cancels, or cleanly when the server stops (the bus ends its
subscribers); a subscriber that falls behind gets UNAVAILABLE and re-subscribes.

With `after_sequence` the stream is the change feed (server/outbox): after the snapshot it
replays the recorded changes after that sequence from the outbox, then follows live ones,
dropping any the replay already gave (subscribed first, so none falls in between).

Who sees what:
    the CRM core (service)         every event of the tenant its token names
    super admin without a tenant   platform events (no tenant)
    admin, scope TENANT            every event of the tenant, and circuit changes
    admin, scope MINE (default)    their own, tenant-wide ones, alerts for admins, circuits
    member                         their own, and tenant-wide ones that are not admin business
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import TYPE_CHECKING

import grpc
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import func, select

from server.auth.caller import Caller, Role
from server.connections.alerts_rpc import connection_type_of
from server.errors import InvalidArgument, PermissionNotGranted, Unavailable
from server.events import Event, SubscriberLagged
from server.events.bus import Predicate
from server.interceptors.context import current_caller
from server.outbox import read_one, replay_page
from server.outbox.feed import REPLAY_PAGE
from server.protoconv import struct, timestamp
from server.resilience.alerts import open_alert_count

if TYPE_CHECKING:
    from server.bootstrap import Deps

KINDS = frozenset(
    name.removeprefix("EVENT_KIND_")
    for name in pb.EventKind.DESCRIPTOR.values_by_name
    if name != "EVENT_KIND_UNSPECIFIED"
)
# Tenant events only admins see (the DLQ, audiences and provider state are admin pages).
ADMIN_ONLY = frozenset({"JOB_FAILED", "AUDIENCE_SYNCED", "CIRCUIT_STATE_CHANGED"})
# Platform events (no tenant) tenant admins see too: ListCircuitBreakers is theirs as well.
PLATFORM_FOR_ADMINS = frozenset({"CIRCUIT_STATE_CHANGED"})


def event_filter(caller: Caller, *, whole_tenant: bool, kinds: Collection[str]) -> Predicate:
    """The bus predicate for `caller`'s stream (see the module docstring)."""
    wanted = frozenset(kinds)
    me = caller.user_id

    def accepts(event: Event) -> bool:
        if event.kind not in KINDS or (wanted and event.kind not in wanted):
            return False
        if caller.role is Role.SERVICE:
            return caller.tenant_id is not None and event.tenant_id == caller.tenant_id
        if caller.tenant_id is None:
            return event.tenant_id is None
        if event.tenant_id is None:
            return caller.is_admin and event.kind in PLATFORM_FOR_ADMINS
        if event.tenant_id != caller.tenant_id:
            return False
        if caller.is_admin:
            return (
                whole_tenant
                or event.user_id in (None, me)
                or (event.kind == "ALERT" and event.data.get("audience") == "tenant_admin")
            )
        if event.kind in ADMIN_ONLY:
            return False
        if event.kind == "ALERT":
            return event.user_id is not None and event.user_id == me
        return event.user_id is None or event.user_id == me

    return accepts


def _recorded_only(accepts: Predicate) -> Predicate:
    """The change feed: events recorded in the outbox (they carry a sequence)."""
    return lambda event: event.sequence is not None and accepts(event)


def event_proto(event: Event) -> pb.ConnectionEvent:
    return pb.ConnectionEvent(
        id=event.id,
        kind=pb.EventKind.Value("EVENT_KIND_" + event.kind),
        organizacao_id=str(event.tenant_id) if event.tenant_id else "",
        usuario_id=str(event.user_id) if event.user_id else "",
        connection_type=connection_type_of(event.data.get("connection_type")),
        occurred_at=timestamp(event.occurred_at),
        payload=struct(event.data),
        sequence=event.sequence or 0,
    )


def _watch_response(event: Event) -> pb.WatchEventsResponse:
    # Built once per event and shared by every stream of this process.
    return event.derived("watch_events", lambda: pb.WatchEventsResponse(event=event_proto(event)))


class EventRpcs:
    deps: Deps

    async def overview_provider(
        self, caller: Caller, whole_tenant: bool
    ) -> list[pb.ConnectionSummary]:
        """The snapshot's connection list. Extension point: the connections overview
        (GetConnectionsOverview's mixin) overrides this; until then the list is empty."""
        return []

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        caller = current_caller()
        service = caller.role is Role.SERVICE
        if service:
            caller.require_tenant()
        whole_tenant = request.scope == pb.OVERVIEW_SCOPE_TENANT or service
        if whole_tenant and not (caller.is_admin or service):
            raise PermissionNotGranted("only admins may watch the whole tenant (scope TENANT)")
        kinds = [pb.EventKind.Name(k).removeprefix("EVENT_KIND_") for k in request.kinds if k]
        accepts = event_filter(caller, whole_tenant=whole_tenant, kinds=kinds)
        resume = request.after_sequence if request.HasField("after_sequence") else None
        if resume is not None:
            if caller.tenant_id is None:
                raise InvalidArgument.field("after_sequence", "the change feed is per tenant")
            accepts = _recorded_only(accepts)
        heartbeat = self.deps.settings.stream_heartbeat_seconds
        async with self.deps.bus.watch(accepts, heartbeat=heartbeat) as stream:
            first: list[Event] = []
            if resume is not None:
                # The first page, checked against retention with it: errors come before
                # the snapshot, and a purge racing the read cannot leave a silent gap.
                async with self.deps.db.unit_of_work(caller) as session:
                    first = await replay_page(session, resume)
            yield pb.WatchEventsResponse(snapshot=await self._snapshot(caller, whole_tenant))
            if resume is None:
                async for message in self._follow(stream, self._whole(caller)):
                    yield message
                return
            async for message in self._feed(caller, stream, resume, accepts, first):
                yield message

    async def _feed(
        self,
        caller: Caller,
        stream: AsyncIterator[Event | None],
        after: int,
        accepts: Predicate,
        first: list[Event],
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        """Replays recorded changes after `after` (`first` is the page already read), then
        follows live ones past the replay. Each later page is checked against retention in
        its own read (SEQUENCE_EXPIRED when a purge overtook the replay)."""
        last, page = after, first
        while True:
            for event in page:
                last = event.sequence or last
                if accepts(event):
                    yield _watch_response(event)
            if len(page) < REPLAY_PAGE:
                break
            async with self.deps.db.unit_of_work(caller) as session:
                page = await replay_page(session, last)

        async def past_replay(event: Event) -> Event | None:
            nonlocal last
            if event.sequence is None or event.sequence <= last:
                return None  # the replay gave it already
            last = event.sequence
            return await whole(event)

        whole = self._whole(caller)
        async for message in self._follow(stream, past_replay):
            yield message

    def _whole(self, caller: Caller) -> Callable[[Event], Awaitable[Event | None]]:
        """A recorded change announced without its data (too large for NOTIFY) is read
        from the outbox; every other event passes as it is."""

        async def whole(event: Event) -> Event | None:
            if event.complete or event.sequence is None or event.tenant_id is None:
                return event
            async with self.deps.db.unit_of_work(caller) as session:
                return await read_one(session, event.sequence)

        return whole

    async def _snapshot(self, caller: Caller, whole_tenant: bool) -> pb.EventsSnapshot:
        async with self.deps.db.unit_of_work(caller) as session:
            open_alerts = await open_alert_count(session, caller)
            as_of = await session.scalar(select(func.now()))
        return pb.EventsSnapshot(
            connections=await self.overview_provider(caller, whole_tenant),
            alertas_abertos=open_alerts,
            as_of=timestamp(as_of),
        )

    async def _follow(
        self,
        stream: AsyncIterator[Event | None],
        gate: Callable[[Event], Awaitable[Event | None]] | None = None,
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        try:
            async for item in stream:
                if item is None:
                    yield pb.WatchEventsResponse(
                        heartbeat=resources_pb2.Heartbeat(sent_at=timestamp(self.deps.clock.now()))
                    )
                    continue
                event = item if gate is None else await gate(item)
                if event is not None:
                    yield _watch_response(event)
        except SubscriberLagged as exc:
            raise Unavailable("event stream fell behind; watch again", retry_after=1.0) from exc
