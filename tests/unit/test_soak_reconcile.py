"""The soak's arithmetic: what counts as processed, duplicated, dead-lettered or lost."""

from __future__ import annotations

from collections import Counter

import pytest

from soak.reconcile import Reconciliation, Row, _row, table
from soak.traffic import Item


def _item(key: str, *, accepted: bool = True, link: str = "", at: float = 5.0) -> Item:
    item = Item("whatsapp_in", key, link or key, at, wall=1000.0 + at, accepted=accepted)
    item.latency = 0.05 if accepted else None
    item.refused = "" if accepted else "HTTP 400"
    return item


def test_every_accepted_item_is_processed_dead_or_lost_and_copies_are_duplicates() -> None:
    items = [
        _item("a"),
        _item("b"),
        _item("c", link="evt_c"),
        _item("d"),
        _item("e", accepted=False),
        _item("f", at=50.0),
        _item("g"),
    ]
    # When each copy was done (epoch seconds); NaN: a copy there but not done (an event
    # created and never renamed).
    done = {"a": [1007.0], "b": [1006.0, 1009.0, 1010.0], "f": [1051.5], "g": [float("nan")]}
    dead = ["5f1c whatsapp:evt_c {}"]

    row = _row("whatsapp_in", items, done, dead, window=(0.0, 10.0))

    assert (row.sent, row.accepted, row.refused) == (7, 6, 1)
    assert (row.processed, row.duplicated, row.dead, row.lost) == (3, 2, 1, 2)
    assert row.lost_keys == ["d", "g"] and row.refusals == Counter({"HTTP 400": 1})
    assert row.duplicated_keys == ["b x3"]
    # Time to processed: from the first attempt to the first copy done.
    assert row.p_during is not None and row.p_during[0] == pytest.approx(1.5, abs=0.5)
    assert row.p_outside == pytest.approx((1.5, 1.5))


def test_the_run_fails_on_a_loss_a_duplicate_or_a_stream_with_nothing_accepted() -> None:
    clean = Row("x", sent=3, accepted=3, processed=3)
    assert Reconciliation([clean], [], {}).ok
    assert not Reconciliation([clean, Row("y", sent=2, accepted=2, lost=1)], [], {}).ok
    assert not Reconciliation([Row("y", sent=2, accepted=2, processed=2, duplicated=1)], [], {}).ok
    assert not Reconciliation([Row("y", sent=2, refused=2)], [], {}).ok
    text = table(Reconciliation([Row("y", sent=2, accepted=2, lost=1, lost_keys=["k"])], [], {}))
    assert "LOST y: k" in text
    twice = Row("y", sent=1, accepted=1, processed=1, duplicated=1, duplicated_keys=["k x2"])
    assert "DUPLICATED y: k x2" in table(Reconciliation([twice], [], {}))


def test_whatsapp_sends_repeated_under_their_id_are_reported_not_duplicated() -> None:
    result = Reconciliation([Row("whatsapp_out", sent=1, accepted=1, processed=1)], [], {}, 2)
    assert result.ok
    assert "repeated under their message id (one message each at WhatsApp): 2" in table(result)
