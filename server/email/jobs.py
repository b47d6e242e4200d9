"""Registration only: the `email_send` operation -> its handler, under the spec's e-mail
policy (3 attempts, 3 s exponential), and the Gmail token refresh ahead of expiry. No breaker
on the operation: every user has an SMTP server of their own, and one dead server must not
hold back everyone else's mail; Gmail calls go through the `gmail` breaker themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.email.connection import smtp_client
from server.email.delivery import dead_lettered, deliver
from server.email.gmail import REFRESH_INTERVAL_S, keeper
from server.resilience.jobs import Job
from server.resilience.operations import EMAIL_SEND

if TYPE_CHECKING:
    from server.bootstrap import Deps


def register_jobs(deps: Deps) -> None:
    smtp = smtp_client(deps)

    async def on_send(job: Job) -> None:
        await deliver(deps, smtp, job)

    deps.jobs.register(EMAIL_SEND, on_send, on_dead_letter=dead_lettered)
    keeper(deps).schedule(REFRESH_INTERVAL_S)
