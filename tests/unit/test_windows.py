from __future__ import annotations

import pytest

from detectors.events import Event
from detectors.windows import Windower


def ev(acct: str, ts: float, eid: str | None = None, out: int = 10) -> Event:
    return Event(acct, ts, "m", 1, out, event_id=eid)


def test_windows_close_in_order_after_lateness():
    w = Windower(size_s=10, lateness_s=5)
    for t in (1, 12, 25, 31):
        assert w.add(ev("a", t))
    # watermark 24: window [0,10) closes (10 + 5 <= 24); [10,20) needs 25.
    assert [c.start for c in w.close_until(24)] == [0.0]
    assert [c.start for c in w.close_until(25)] == [10.0]
    assert list(w.close_until(25)) == []
    closed = list(w.close_until(100))
    assert [c.start for c in closed] == [20.0, 30.0]
    assert closed[0].accounts["a"].requests == 1


def test_counters_per_account():
    w = Windower(size_s=60, lateness_s=0)
    w.add(ev("a", 1, out=100))
    w.add(ev("a", 2, out=50))
    w.add(ev("b", 3, out=7))
    (c,) = list(w.close_until(60))
    assert c.accounts["a"].requests == 2 and c.accounts["a"].output_tokens == 150
    assert c.accounts["b"].output_tokens == 7
    assert c.accounts["a"].first_ts == 1 and c.accounts["a"].last_ts == 2


def test_duplicates_and_late_events_are_not_counted():
    w = Windower(size_s=10, lateness_s=0)
    assert w.add(ev("a", 1, "x"))
    assert not w.add(ev("a", 2, "x"))
    assert w.add(ev("a", 3, "y"))
    assert w.add(ev("a", 4))  # no event_id: cannot be deduplicated, counted
    assert w.duplicate_events == 1
    (c,) = list(w.close_until(10))
    assert c.accounts["a"].requests == 3
    assert not w.add(ev("a", 5, "z"))
    assert w.late_events == 1


def test_quiet_time_makes_old_spans_late_even_without_buckets():
    w = Windower(size_s=10, lateness_s=0)
    list(w.close_until(100))
    assert not w.add(ev("a", 55))
    assert w.add(ev("a", 100))


def test_bad_parameters():
    with pytest.raises(ValueError, match="size_s"):
        Windower(size_s=0)
    with pytest.raises(ValueError, match="lateness_s"):
        Windower(lateness_s=-1)
