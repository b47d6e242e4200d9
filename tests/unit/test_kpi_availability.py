"""Uptime and reconnection time from a status history (pure)."""

from __future__ import annotations

import datetime as dt

from server.kpis.availability import Change, availability

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_down_for_thirty_minutes_of_two_hours() -> None:
    changes = [Change(at(-60), "active"), Change(at(30), "expired"), Change(at(60), "active")]
    seen = availability(changes, at(0), at(120))
    assert seen.observed_s == 7200 and seen.up_s == 5400
    assert seen.uptime_ratio == 0.75
    assert seen.disconnections == 1 and seen.reconnection_spells == [1800.0]
    assert seen.status == "active"


def test_setup_before_the_first_connection_is_not_downtime() -> None:
    changes = [
        Change(at(0), "disconnected"),
        Change(at(1), "qr_pending"),
        Change(at(5), "connected"),
        Change(at(50), "failed"),
    ]
    seen = availability(changes, at(0), at(60))
    assert seen.observed_s == 55 * 60 and seen.up_s == 45 * 60
    assert seen.disconnections == 1 and seen.reconnection_spells == []
    assert seen.mean_reconnection_s == 0.0 and seen.status == "failed"


def test_a_spell_that_began_before_the_period_counts_whole_when_it_ends_inside() -> None:
    changes = [Change(at(-90), "active"), Change(at(-30), "error"), Change(at(15), "active")]
    seen = availability(changes, at(0), at(60))
    assert seen.up_s == 45 * 60 and seen.observed_s == 3600
    assert seen.disconnections == 0 and seen.reconnection_spells == [45 * 60.0]


def test_a_removed_connection_stops_being_observed() -> None:
    changes = [Change(at(0), "active"), Change(at(20), "removed"), Change(at(40), "active")]
    seen = availability(changes, at(0), at(60))
    assert seen.observed_s == 40 * 60 == seen.up_s
    assert seen.uptime_ratio == 1.0 and seen.reconnection_spells == []


def test_nothing_observed_reads_as_fully_up() -> None:
    seen = availability([Change(at(70), "active")], at(0), at(60))
    assert seen.observed_s == 0 and seen.uptime_ratio == 1.0 and seen.status == ""
