"""Eviction of inactive accounts: memory stays bounded under a flood of fresh account ids,
and what is evicted depends on event time only (worker and replay agree)."""

from __future__ import annotations

import math

import pytest

from detectors.baseline import AccountBaseline
from detectors.events import Event
from detectors.pipeline import Detection

T0 = 1_767_600_000.0  # a window boundary
HOUR = 3600.0


def _ev(account: str, ts: float) -> Event:
    return Event(account, ts, "m", 100, 400, event_id=f"{account}@{ts}")


def test_a_flood_of_fresh_ids_keeps_the_live_account_count_bounded():
    det = Detection(window_s=60, lateness_s=0, account_ttl_s=HOUR)
    hours, total = 6, 50_000
    per_window = total // (hours * 60)
    peak = 0
    n = 0
    for w in range(hours * 60):
        start = T0 + w * 60
        det.add(_ev("steady", start + 1))  # one real customer, active every minute
        for i in range(per_window):
            det.add(_ev(f"flood-{n}", start + i * 60 / per_window))
            n += 1
        det.advance(start + 60)
        det.pop_touched()  # the worker saves after every batch
        peak = max(peak, det.active_accounts)
    per_ttl = per_window * 60  # fresh ids that arrive within one TTL
    assert n >= 49_000
    # Bounded by a TTL's worth of ids (plus the last bucket), not by the 50k seen.
    assert peak <= per_ttl + 2 * per_window + 1, (peak, per_ttl)
    assert det.active_accounts <= per_ttl + 2 * per_window + 1
    assert det.accounts_evicted >= n - per_ttl - 2 * per_window
    # Every per-account structure of the detection shrinks with it.
    assert all(base.bucket is not None for base in det._baselines.values())
    live = sum(1 for b, ids in det._by_bucket.items() for a in ids
               if (base := det._baselines.get(a)) is not None and base.bucket == b)
    assert live == det.active_accounts
    # Entries of accounts that moved on are dropped with their bucket: here only the steady
    # account's, one per live bucket it passed through.
    assert sum(map(len, det._by_bucket.values())) <= det.active_accounts + len(det._by_bucket)
    assert len(det._by_bucket) <= 64
    # The busy account never went quiet: it was never evicted.
    assert det.export_account("steady") is not None
    assert det.export_account("flood-0") is None


def test_an_account_is_evicted_after_the_ttl_of_event_time_and_relearns_if_it_returns():
    det = Detection(window_s=60, lateness_s=0, account_ttl_s=2 * HOUR)
    for w in range(10):
        det.add(_ev("a", T0 + w * 60 + 5))
    det.advance(T0 + 600)
    learned = det.export_account("a")
    assert learned is not None
    det.pop_touched()
    # Wall time plays no part: only the watermark (event time) moves.
    det.add(_ev("other", T0 + 2 * HOUR + 5))
    det.advance(T0 + 2 * HOUR + 60)
    assert det.export_account("a") is not None  # last active window started 2h - 60s before
    det.add(_ev("other", T0 + 2 * HOUR + 600))
    det.advance(T0 + 2 * HOUR + 660)
    assert det.export_account("a") is None
    assert "a" in det.pop_touched()  # the store writes its tombstone
    det.add(_ev("a", T0 + 3 * HOUR))
    det.advance(T0 + 3 * HOUR + 60)
    back = AccountBaseline.from_bytes(det.export_account("a") or b"")
    assert back.windows == 1  # starts again, like a new account


def test_eviction_does_not_depend_on_how_the_watermark_is_batched():
    """The worker advances per batch, replay per event: both must evict the same accounts."""
    events = []
    for w in range(0, 300):
        for i in range(w % 7 + 1):
            a = f"acct-{(w * 13 + i * 101) % 400}"
            events.append(_ev(a, T0 + w * 60 + i))

    def run(every: int) -> dict[str, bytes | None]:
        det = Detection(window_s=60, lateness_s=0, account_ttl_s=HOUR)
        for k, ev in enumerate(events):
            det.add(ev)
            if k % every == 0:
                det.advance(ev.ts - 1)
        det.advance(events[-1].ts + 120)
        return {f"acct-{i}": det.export_account(f"acct-{i}") for i in range(400)}

    per_event, batched = run(1), run(997)
    assert per_event == batched
    assert any(v is None for v in per_event.values())  # some were evicted
    assert any(v is not None for v in per_event.values())


def test_restored_state_with_a_forged_time_is_evicted_at_the_next_window():
    det = Detection(window_s=60, lateness_s=0, account_ttl_s=HOUR)
    b = AccountBaseline()
    b.observe(T0, T0 + 10, 3, 300, 1.0, 0.0, None)
    det.import_account("good", b.to_bytes())
    # last_ts = +inf: would never be evicted if taken at face value.
    fb = AccountBaseline.from_bytes(b.to_bytes())
    idx = [i for i, v in enumerate(fb._s) if v == fb.last_ts]
    assert idx
    fb._s[idx[0]] = math.inf
    det.import_account("forged", fb.to_bytes())
    det.add(_ev("x", T0 + 120))
    det.advance(T0 + 180)
    assert det.export_account("forged") is None
    assert det.export_account("good") is not None


def test_ttl_shorter_than_a_cluster_window_is_refused():
    with pytest.raises(ValueError, match="account_ttl_s"):
        Detection(window_s=60, cluster_windows=10, account_ttl_s=300)
