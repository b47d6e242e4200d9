"""A real grpc.aio server implementing every unary RPC of the contract with canned replies.

For tests of the HTTP edge alone: the test says what an RPC answers (`reply`), calls the real
sidecar, and reads back the request message the gateway built (`received`). No business logic,
no database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import FileDescriptor, MethodDescriptor
from google.protobuf.message import Message


class CannedServer:
    def __init__(self, files: Iterable[FileDescriptor]) -> None:
        self._replies: dict[str, Message] = {}
        self.received: dict[str, Message] = {}
        self._handlers = [self._service_handler(f, s) for f in files for s in f.services_by_name]

    def reply(self, grpc_path: str, message: Message) -> None:
        """What the RPC at `/package.Service/Method` answers from now on."""
        self._replies[grpc_path] = message

    @asynccontextmanager
    async def running(self) -> AsyncIterator[grpc.aio.Channel]:
        """Serve on a loopback port; yields a channel to it."""
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(self._handlers)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            yield channel
        finally:
            await channel.close()
            await server.stop(grace=None)

    def _service_handler(self, file: FileDescriptor, name: str) -> grpc.GenericRpcHandler:
        service = file.services_by_name[name]
        handlers = {
            method.name: self._method_handler(f"/{service.full_name}/{method.name}", method)
            for method in service.methods
            if not method.server_streaming and not method.client_streaming
        }
        return grpc.method_handlers_generic_handler(service.full_name, handlers)

    def _method_handler(self, path: str, method: MethodDescriptor) -> grpc.RpcMethodHandler:
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)

        async def handle(request: Message, context: grpc.aio.ServicerContext) -> Any:
            self.received[path] = request
            reply = self._replies.get(path)
            if reply is None:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"no canned reply for {path}")
            return reply

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=request_class.FromString,
            response_serializer=response_class.SerializeToString,
        )
