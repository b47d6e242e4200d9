"""The messaging window as pure functions (spec 7.8; Instagram's rule):

    within 24 h of the customer's last message    any reply                      OPEN
      ... and less than CLOSING_SOON left                                         CLOSING_SOON
    24 h to 7 days                                 only a human, tagged HUMAN_AGENT HUMAN_AGENT_ONLY
    after 7 days, or the customer never wrote      nothing                         CLOSED

A send by a user's token is a human's; one by the service identity (automations) is
automated and never tagged HUMAN_AGENT.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

STANDARD = dt.timedelta(hours=24)
HUMAN_AGENT = dt.timedelta(days=7)
# "O sistema deve alertar quando a janela estiver proxima de fechar."
CLOSING_SOON = dt.timedelta(hours=2)


class WindowState(enum.StrEnum):
    OPEN = "open"
    CLOSING_SOON = "closing_soon"
    HUMAN_AGENT_ONLY = "human_agent_only"
    CLOSED = "closed"


@dataclass(frozen=True)
class SendDecision:
    allowed: bool
    human_agent_tag: bool = False
    why: str = ""


def state_at(last_inbound: dt.datetime | None, now: dt.datetime) -> WindowState:
    if last_inbound is None:
        return WindowState.CLOSED
    age = now - last_inbound
    if age <= STANDARD - CLOSING_SOON:
        return WindowState.OPEN
    if age <= STANDARD:
        return WindowState.CLOSING_SOON
    if age <= HUMAN_AGENT:
        return WindowState.HUMAN_AGENT_ONLY
    return WindowState.CLOSED


def decide(last_inbound: dt.datetime | None, now: dt.datetime, *, human: bool) -> SendDecision:
    """Whether a send may go to Instagram now, and with which tag."""
    state = state_at(last_inbound, now)
    if state in (WindowState.OPEN, WindowState.CLOSING_SOON):
        return SendDecision(True)
    if state is WindowState.HUMAN_AGENT_ONLY:
        if human:
            return SendDecision(True, human_agent_tag=True)
        return SendDecision(
            False,
            why="more than 24 hours since the contact's last message: only a person may "
            "reply now (HUMAN_AGENT, up to 7 days); automated messages are not allowed",
        )
    if last_inbound is None:
        return SendDecision(False, why="the contact has not written to this account yet")
    return SendDecision(
        False, why="more than 7 days since the contact's last message: wait for them to write"
    )


def expiries(last_inbound: dt.datetime | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(end of free replies, end of HUMAN_AGENT replies)."""
    if last_inbound is None:
        return None, None
    return last_inbound + STANDARD, last_inbound + HUMAN_AGENT
