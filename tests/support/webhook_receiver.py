"""A tenant's webhook endpoint on loopback: records every request and answers from a script
(e.g. 500, 500, then 200 for ever)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webhooks_http.runner import serve_in_background


@dataclass(frozen=True)
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    url: str
    answers: list[int]
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_for(self, count: int, within: float = 15) -> list[Received]:
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)


@asynccontextmanager
async def webhook_receiver(answers: Sequence[int] = (200,)) -> AsyncIterator[Receiver]:
    """Answers `answers` in turn, then the last one again for every later request."""
    holder: list[Receiver] = []

    async def hook(request: Request) -> Response:
        receiver = holder[0]
        body = await request.body()
        async with receiver.arrived:
            index = len(receiver.received)
            receiver.received.append(
                Received(body, {k.lower(): v for k, v in request.headers.items()})
            )
            receiver.arrived.notify_all()
        status = receiver.answers[min(index, len(receiver.answers) - 1)]
        return Response(status_code=status)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with serve_in_background(app, http="h11", loop="asyncio") as running:
        receiver = Receiver(url=f"http://127.0.0.1:{running.port}/hook", answers=list(answers))
        holder.append(receiver)
        yield receiver
