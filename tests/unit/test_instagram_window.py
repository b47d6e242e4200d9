"""The messaging window rule (server/instagram/window.py) at its edges."""

from __future__ import annotations

import datetime as dt

import pytest

from server.instagram.window import WindowState, decide, expiries, state_at

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("age", "state"),
    [
        (H, WindowState.OPEN),
        (22 * H, WindowState.OPEN),
        (22 * H + dt.timedelta(seconds=1), WindowState.CLOSING_SOON),
        (24 * H, WindowState.CLOSING_SOON),
        (24 * H + dt.timedelta(seconds=1), WindowState.HUMAN_AGENT_ONLY),
        (7 * 24 * H, WindowState.HUMAN_AGENT_ONLY),
        (7 * 24 * H + dt.timedelta(seconds=1), WindowState.CLOSED),
    ],
)
def test_state_by_age(age: dt.timedelta, state: WindowState) -> None:
    assert state_at(NOW - age, NOW) is state


def test_no_message_from_the_customer_means_closed() -> None:
    assert state_at(None, NOW) is WindowState.CLOSED
    assert not decide(None, NOW, human=True).allowed
    assert expiries(None) == (None, None)


def test_people_may_answer_until_seven_days_tagged_automation_only_within_24_hours() -> None:
    inside = decide(NOW - 2 * H, NOW, human=False)
    assert inside.allowed and not inside.human_agent_tag
    assert not decide(NOW - 2 * H, NOW, human=True).human_agent_tag
    late_human = decide(NOW - 30 * H, NOW, human=True)
    assert late_human.allowed and late_human.human_agent_tag
    late_bot = decide(NOW - 30 * H, NOW, human=False)
    assert not late_bot.allowed and "automated" in late_bot.why
    assert not decide(NOW - 8 * 24 * H, NOW, human=True).allowed


def test_expiries() -> None:
    free, human = expiries(NOW)
    assert (free, human) == (NOW + 24 * H, NOW + 7 * 24 * H)
