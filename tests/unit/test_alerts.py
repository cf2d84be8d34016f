from __future__ import annotations

import random

import pytest

from detectors.alerts import AlertBook, alert_id
from detectors.findings import SEVERITIES, Finding


def f(w: int, score: float = 8.0, sev: str = "warning", entity: str = "a1", members=None):
    return Finding(
        "cluster" if members is not None else "account",
        entity, "det", w * 60.0, (w + 1) * 60.0, score, 6.0, sev,  # type: ignore[arg-type]
        evidence={"score": score},
        member_count=None if members is None else len(members),
        members=members,
    )


def test_lifecycle_open_update_resolve_and_deterministic_id():
    book = AlertBook(window_s=60, quiet_windows=2)
    (opened,) = book.observe(f(0))
    assert opened["state"] == "opened"
    assert opened["alert_id"] == alert_id("account", "a1", "det", 0.0)
    assert book.observe(f(1, score=8.5)) == []  # small change folded in silently
    (up,) = book.observe(f(2, score=20.0, sev="critical"))
    assert up["state"] == "updated" and up["severity"] == "critical"
    assert up["alert_id"] == opened["alert_id"]
    assert book.tick(3 * 60 + 60) == []  # one quiet window only
    (res,) = book.tick(3 * 60 + 120)
    assert res["state"] == "resolved" and res["alert_id"] == opened["alert_id"]
    assert book.open_count == 0


def test_redelivered_findings_never_open_a_second_alert():
    book = AlertBook(window_s=60, quiet_windows=1)
    first = [book.observe(f(w)) for w in range(3)]
    book.tick(10_000)
    again = [book.observe(f(w)) for w in range(3)]
    assert again == [[], [], []]
    assert first[0][0]["state"] == "opened"
    # A genuinely new window opens a new alert, with a new id.
    (new,) = book.observe(f(200))
    assert new["state"] == "opened" and new["alert_id"] != first[0][0]["alert_id"]


def test_a_long_gap_resolves_without_a_tick_so_batching_cannot_change_ids():
    """Worker and replay tick at different moments; the episode boundary must not depend on
    it. Windows 0 and 5 with quiet_windows=2: two episodes, whether or not a tick came between."""
    ticked = AlertBook(window_s=60, quiet_windows=2)
    batched = AlertBook(window_s=60, quiet_windows=2)
    a = ticked.observe(f(0)) + ticked.tick(4 * 60) + ticked.observe(f(5))
    b = batched.observe(f(0)) + batched.observe(f(5))
    assert [c["state"] for c in a] == [c["state"] for c in b] == ["opened", "resolved", "opened"]
    assert [c["alert_id"] for c in a] == [c["alert_id"] for c in b]
    # A gap shorter than quiet_windows stays one episode.
    one = AlertBook(window_s=60, quiet_windows=2)
    assert [c["state"] for c in one.observe(f(0)) + one.observe(f(2, score=30))] == [
        "opened",
        "updated",
    ]


def test_cluster_alerts_carry_capped_members():
    book = AlertBook(window_s=60, max_members=3)
    (change,) = book.observe(f(0, members=[f"m{i}" for i in range(10)], entity="c1"))
    assert change["member_count"] == 10 and change["members"] == ["m0", "m1", "m2"]
    (grown,) = book.observe(f(1, members=[f"m{i}" for i in range(20)], entity="c1"))
    assert grown["state"] == "updated" and grown["member_count"] == 20


def test_open_by_severity():
    book = AlertBook()
    book.observe(f(0, entity="x"))
    book.observe(f(0, entity="y", sev="critical"))
    assert book.open_by_severity() == {"info": 0, "warning": 1, "critical": 1}


def _recount(book: AlertBook) -> dict[str, int]:
    out = dict.fromkeys(SEVERITIES, 0)
    for o in book._open.values():
        out[o.severity] += 1
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_open_by_severity_stays_equal_to_a_recount(seed: int) -> None:
    """The counts are kept as alerts open, escalate, resolve (by a later finding or a tick)
    and are reloaded: after any mix of those they equal counting the open alerts."""
    rng = random.Random(seed)
    book = AlertBook(window_s=60, quiet_windows=2)
    restored = AlertBook(window_s=60, quiet_windows=2)
    for step in range(3000):
        w = step // 40
        entity = f"a{rng.randrange(60)}"
        detector = rng.choice(["account_baseline", "account_extraction"])
        sev = rng.choice(SEVERITIES)
        if rng.random() < 0.05:
            book.tick(w * 60 + rng.choice([0, 120, 300]))
        else:
            book.observe(Finding("account", entity, detector, w * 60, w * 60 + 60, 5.0, 4.0, sev))
        for key, rec in book.pop_dirty().items():
            restored.load_key(key, rec)
        assert book.open_by_severity() == _recount(book)
        assert restored.open_by_severity() == _recount(restored) == _recount(book)
    assert sum(book.open_by_severity().values()) == book.open_count > 0


def test_a_stored_alert_with_an_unknown_severity_is_refused() -> None:
    book = AlertBook()
    f = Finding("account", "a1", "account_baseline", 0, 60, 9.0, 6.0, "warning")
    book.observe(f)
    rec = book.dump_key(("account", "a1", "account_baseline"))
    assert rec is not None and rec["open"] is not None
    rec["open"]["severity"] = "apocalyptic"
    other = AlertBook()
    with pytest.raises(KeyError):
        other.load_key(("account", "a1", "account_baseline"), rec)
    assert other.open_count == 0 and other.open_by_severity() == dict.fromkeys(SEVERITIES, 0)
