"""What every deliverer needs: the inbox, the platform's credentials, the refusal answer."""

from __future__ import annotations

from dataclasses import dataclass, field

from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb

from server.bootstrap import Deps
from server.ingress.answers import answer
from server.ingress.inbox import Inbox
from server.ingress.rejections import record_rejection
from server.ingress.routes import ProviderRoute
from server.ingress.signatures import Check


@dataclass
class Ingress:
    deps: Deps
    inbox: Inbox = field(init=False)

    def __post_init__(self) -> None:
        self.inbox = Inbox(self.deps.db)

    async def platform(self, provider: str) -> dict[str, str]:
        return await self.deps.platform.current(self.deps.db, provider)

    async def refuse(
        self, route: ProviderRoute, raw: pb.RawHttpRequest, check: Check
    ) -> pb.RawHttpResponse:
        """401 without a signature, 403 with a wrong one; counted (and audited once per source
        and minute), nothing stored."""
        await record_rejection(self.deps.db, route.provider, raw, check)
        status = 401 if check is Check.MISSING else 403
        return answer(status, {"error": check.value})
