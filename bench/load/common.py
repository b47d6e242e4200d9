"""What every load generator shares: config in, JSON lines out, uvloop, gRPC channels."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc


def read_config() -> dict[str, Any]:
    line = sys.stdin.readline()
    config: dict[str, Any] = json.loads(line)
    return config


def emit(**message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def wait_for_go() -> None:
    """Blocks until the runner writes a line on stdin (after a `ready` message)."""
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def run(main: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
    """Runs `main(config)` on uvloop (the client should not be the bottleneck) and prints
    `{"result": ...}`."""
    import uvloop

    config = read_config()
    result = uvloop.run(main(config))
    emit(result=result)


def channel(target: str, index: int = 0) -> grpc.aio.Channel:
    """A channel with its own TCP connection: grpc shares subchannels between channels with
    equal arguments, and one HTTP/2 connection caps the concurrent streams."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("bench.channel_index", index),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ],
    )


def metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()
