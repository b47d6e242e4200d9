"""A real implementation of the test contract's ThingService, recording what it received."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import duration_pb2, empty_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

SERVICE = "gwtest.v1.ThingService"


@dataclass
class Call:
    method: str
    request: Any
    metadata: dict[str, str]
    time_remaining: float | None


@dataclass
class Recorder:
    """What the server saw: lets tests assert on the request the gateway built."""

    calls: list[Call] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last(self) -> Call:
        return self.calls[-1]


def rich_status(code: int, message: str, *, retry: bool, bad_request: bool) -> grpc.Status:
    status = status_pb2.Status(code=code, message=message)
    info = error_details_pb2.ErrorInfo(
        reason="TEST_REASON", domain="gwtest.renove", metadata={"thing": "t-1"}
    )
    status.details.add().Pack(info)
    if bad_request:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field="thing.display_name", description="must not be empty"
        )
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    if retry:
        delay = duration_pb2.Duration(seconds=2, nanos=500_000_000)
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return rpc_status.to_status(status)


class ThingService:
    def __init__(self, pb2: ModuleType, recorder: Recorder) -> None:
        self._pb = pb2
        self._rec = recorder

    def handler(self) -> grpc.GenericRpcHandler:
        pb = self._pb
        unary: dict[str, tuple[Callable[..., Any], Any, Any]] = {
            "GetThing": (self.get_thing, pb.GetThingRequest, pb.Thing),
            "GetDefaultThing": (self.get_default, pb.GetDefaultThingRequest, pb.Thing),
            "CreateThing": (self.create, pb.CreateThingRequest, pb.Thing),
            "UpdateThing": (self.update, pb.UpdateThingRequest, pb.Thing),
            "ListThings": (self.list, pb.ListThingsRequest, pb.ListThingsResponse),
            "ListThingItems": (self.list, pb.ListThingsRequest, pb.ListThingsResponse),
            "DeleteThing": (self.delete, pb.DeleteThingRequest, empty_pb2.Empty),
            "RetryThing": (self.retry, pb.RetryThingRequest, pb.Thing),
            "Fail": (self.fail, pb.FailRequest, empty_pb2.Empty),
            "Slow": (self.slow, pb.SlowRequest, pb.SlowResponse),
            "GetBook": (self.get_book, pb.GetBookRequest, pb.Book),
            "Ping": (self.delete, pb.PingRequest, empty_pb2.Empty),
        }
        handlers: dict[str, grpc.RpcMethodHandler] = {
            name: grpc.unary_unary_rpc_method_handler(
                self._recording(name, fn),
                request_deserializer=req.FromString,
                response_serializer=resp.SerializeToString,
            )
            for name, (fn, req, resp) in unary.items()
        }
        handlers["WatchThing"] = grpc.unary_stream_rpc_method_handler(
            self.watch,
            request_deserializer=pb.WatchThingRequest.FromString,
            response_serializer=pb.Thing.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _recording(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record(name, request, context)
            return await fn(request, context)

        return handle

    def _record(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        metadata = {m.key: m.value for m in context.invocation_metadata() or ()}
        self._rec.calls.append(Call(name, request, metadata, context.time_remaining()))

    async def get_thing(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request.thing_id == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return self._pb.Thing(thing_id=request.thing_id, display_name=request.owner_id)

    async def get_default(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        # A server that hands the browser a cookie (as the OAuth auth-url RPCs do).
        await context.send_initial_metadata(
            (("x-set-cookie", "binding=n0nce; Path=/api; HttpOnly; SameSite=Lax"),)
        )
        return self._pb.Thing(thing_id="default")

    async def create(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        thing = self._pb.Thing()
        thing.CopyFrom(request.thing)
        thing.thing_id = "t-1"
        thing.secret = ""  # write-only
        return thing

    async def update(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return request.thing

    async def list(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        things = [self._pb.Thing(thing_id=tag, color=request.color) for tag in request.tags]
        return self._pb.ListThingsResponse(things=things, total_size=2**53 + 1)

    async def delete(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return empty_pb2.Empty()

    async def retry(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self._pb.Thing(thing_id=request.thing_id, display_name=request.reason)

    async def fail(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        code = request.code if 0 < request.code <= code_pb2.UNAUTHENTICATED else code_pb2.UNKNOWN
        status = rich_status(
            code, request.message, retry=request.retry_info, bad_request=request.bad_request
        )
        await context.abort(status.code, status.details, status.trailing_metadata)

    async def slow(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        remaining = context.time_remaining()
        await asyncio.sleep(min(request.sleep_ms, 300) / 1000)  # capped: fuzzers ask for minutes
        return self._pb.SlowResponse(deadline_s=remaining or 0.0)

    async def get_book(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self._pb.Book(name=request.name)

    async def watch(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        self._record("WatchThing", request, context)
        if request.fail_first:
            await context.abort(_code(request.fail_first), "not yours")
        # Bounded in time: fuzzers ask for millions of messages with long pauses.
        give_up = asyncio.get_running_loop().time() + 3.0
        try:
            for index in range(request.count):
                if asyncio.get_running_loop().time() > give_up:
                    break
                if index and request.idle_ms:
                    await asyncio.sleep(min(request.idle_ms, 1000) / 1000)
                yield self._pb.Thing(thing_id=request.thing_id, display_name=str(index))
        except asyncio.CancelledError:
            self._rec.cancelled.set()
            raise
        if request.fail_at_end:
            status = rich_status(
                code_pb2.UNAVAILABLE, "provider down", retry=True, bad_request=False
            )
            await context.abort(status.code, status.details, status.trailing_metadata)


def _code(value: int) -> grpc.StatusCode:
    return next((c for c in grpc.StatusCode if c.value[0] == value), grpc.StatusCode.UNKNOWN)
