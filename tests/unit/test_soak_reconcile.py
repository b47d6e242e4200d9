"""The soak's arithmetic: what counts as processed, duplicated, dead-lettered or lost."""

from __future__ import annotations

from collections import Counter

import pytest

from soak.reconcile import Reconciliation, Row, _row, table
from soak.traffic import Item


def _item(key: str, *, accepted: bool = True, link: str = "", at: float = 5.0) -> Item:
    item = Item("whatsapp_in", key, link or key, at, accepted=accepted)
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
    ]
    done = Counter({"a": 1, "b": 3, "f": 1})
    dead = ["whatsapp:evt_c {}"]

    row = _row("whatsapp_in", items, done, dead, window=(0.0, 10.0))

    assert (row.sent, row.accepted, row.refused) == (6, 5, 1)
    assert (row.processed, row.duplicated, row.dead, row.lost) == (3, 2, 1, 1)
    assert row.lost_keys == ["d"] and row.refusals == Counter({"HTTP 400": 1})
    assert row.p_during == pytest.approx((0.05, 0.05)) and row.p_outside is not None


def test_the_run_fails_on_a_loss_a_duplicate_or_a_stream_with_nothing_accepted() -> None:
    clean = Row("x", sent=3, accepted=3, processed=3)
    assert Reconciliation([clean], [], {}).ok
    assert not Reconciliation([clean, Row("y", sent=2, accepted=2, lost=1)], [], {}).ok
    assert not Reconciliation([Row("y", sent=2, accepted=2, processed=2, duplicated=1)], [], {}).ok
    assert not Reconciliation([Row("y", sent=2, refused=2)], [], {}).ok
    text = table(Reconciliation([Row("y", sent=2, accepted=2, lost=1, lost_keys=["k"])], [], {}))
    assert "LOST y: k" in text
