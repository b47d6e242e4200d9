"""The CLI's connection to the server: one gRPC channel, the bearer token, readable failures.

The CLI uses the synchronous grpc API: it makes one call (or follows one stream) at a time, and
a blocking iterator is the simplest way to follow a stream until Ctrl-C.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import typer
from google.protobuf.message import Message
from rich.console import Console

from cli.errors import render_rpc_error

DEFAULT_ADDRESS = "127.0.0.1:50051"
T = TypeVar("T")


def default_address() -> str:
    return os.environ.get("CONEXOES_GRPC_ADDR") or DEFAULT_ADDRESS


@dataclass
class Client:
    """What every command needs: where the server is, who we are, where to print."""

    address: str
    token: str | None
    tls: bool = False
    timeout_s: float = 30.0
    console: Console = field(default_factory=Console)
    err_console: Console = field(default_factory=lambda: Console(stderr=True))
    _channel: grpc.Channel | None = None

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            if self.tls:
                creds = grpc.ssl_channel_credentials()
                self._channel = grpc.secure_channel(self.address, creds)
            else:
                self._channel = grpc.insecure_channel(self.address)
        return self._channel

    def stub(self, factory: Callable[[grpc.Channel], T]) -> T:
        return factory(self.channel)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def call(self, method: Callable[..., Any], request: Message) -> Any:
        """A unary call; a failure is printed (status, reason, violations) and exits 1."""
        try:
            return method(request, metadata=self.metadata(), timeout=self.timeout_s)
        except grpc.RpcError as exc:
            self.fail(exc)

    def try_call(
        self, method: Callable[..., Any], request: Message
    ) -> tuple[Any, grpc.RpcError | None]:
        """A unary call whose failure the caller handles: (reply, None) or (None, error)."""
        try:
            return method(request, metadata=self.metadata(), timeout=self.timeout_s), None
        except grpc.RpcError as exc:
            return None, exc

    def stream(
        self, method: Callable[..., Any], request: Message, *, timeout_s: float | None = None
    ) -> Iterator[Any]:
        """A server stream; no deadline unless given (it lives until the user stops it)."""
        call = method(request, metadata=self.metadata(), timeout=timeout_s)
        try:
            yield from call
        except grpc.RpcError as exc:
            self.fail(exc)
        except KeyboardInterrupt:
            call.cancel()
            raise typer.Exit(130) from None
        finally:
            call.cancel()

    def fail(self, error: grpc.RpcError) -> Any:
        render_rpc_error(self.err_console, error, address=self.address, has_token=bool(self.token))
        raise typer.Exit(1) from None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
