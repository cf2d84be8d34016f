"""CoactivityDetector: accounts whose runs start and stop in the same minutes, far beyond
the Poisson chance of the background, are a lockstep group; one org's fleet is not."""

from __future__ import annotations

import random

from detectors.coactivity import CoactivityDetector, poisson_tail_log10

T0 = 100 * 86400.0  # a midnight


def _stream(
    det: CoactivityDetector,
    minutes: int,
    *,
    group: int = 0,
    sessions: tuple[tuple[int, int], ...] = (),
    org_of=lambda i: f"org-g{i}",
    background: int = 400,
    seed: int = 1,
    jitter_s: float = 10.0,
) -> list:
    """``background`` accounts with random short runs (about one every 2 hours each) and a
    ``group`` active together in ``sessions`` (start minute, end minute)."""
    rng = random.Random(seed)
    found = []
    # Background: each account starts runs at random minutes (Poisson), 1-20 minutes long.
    bg_active: dict[int, set[int]] = {}
    for a in range(background):
        t = rng.expovariate(1 / 120.0)
        while t < minutes:
            length = rng.randint(1, 20)
            for m in range(int(t), min(minutes, int(t) + length), rng.choice((1, 2, 3))):
                bg_active.setdefault(m, set()).add(a)
            t += length + rng.expovariate(1 / 120.0)
    for m in range(minutes):
        for a in sorted(bg_active.get(m, ())):
            sec = T0 + m * 60.0 + rng.uniform(0, 59.9)
            det.learn_one({"account_id": f"bg{a}", "ts": T0 + m * 60.0, "org": f"org-bg{a}",
                           "first_ts": sec, "last_ts": sec})
        for s0, s1 in sessions:
            if s0 <= m <= s1:
                for i in range(group):
                    # Members: first request within jitter of the session start, last
                    # within jitter of its end, a request every few minutes in between.
                    if m in (s0, s1):
                        sec = T0 + m * 60.0 + 20.0 + rng.uniform(0, jitter_s)
                    elif rng.random() < 0.4:
                        sec = T0 + m * 60.0 + rng.uniform(0, 59.9)
                    else:
                        continue
                    det.learn_one({"account_id": f"g{i}", "ts": T0 + m * 60.0,
                                   "org": org_of(i), "first_ts": sec, "last_ts": sec})
        found += det.end_window(T0 + m * 60.0, T0 + m * 60.0 + 60.0)
    return found


def test_background_alone_is_quiet() -> None:
    det = CoactivityDetector()
    assert _stream(det, 24 * 60) == []


def test_lockstep_group_found_within_minutes_with_its_members_only() -> None:
    det = CoactivityDetector()
    sessions = ((300, 340), (900, 960), (1700, 1730))
    found = _stream(det, 30 * 60, group=30, sessions=sessions)
    assert found
    first = found[0]
    assert first.detector == "coactivity_lockstep"
    # Found at the first session's start minute (the window that closes it).
    assert first.window_start == T0 + 300 * 60.0
    members = set(found[-1].members)
    assert {f"g{i}" for i in range(30)} <= members
    # Chance co-starters are mostly filtered by the tightest span of request times.
    assert len(members) <= 32
    assert {f.entity_id for f in found} == {first.entity_id}  # one stable group id
    ev = found[-1].evidence
    assert ev["features"]["sync_minutes"] >= 4 and ev["features"]["days"] == 2
    s = ev["signals"][0]
    assert s["observed"] > s["expected"] and s["log10_chance"] <= -8
    assert found[-1].severity == "warning"  # 30 members < critical_members


def test_one_org_fleet_is_benign_and_the_switch_both_ways() -> None:
    # Irregular sessions (not a timer): only the org tells a fleet from a campaign.
    sessions = ((130, 131), (377, 378), (601, 603), (950, 951))
    det = CoactivityDetector()
    assert _stream(det, 20 * 60, group=40, sessions=sessions, org_of=lambda i: "acme") == []
    det = CoactivityDetector(min_org_share=0.0)
    assert _stream(det, 20 * 60, group=40, sessions=sessions, org_of=lambda i: "acme")


def test_hourly_timers_of_many_orgs_are_not_lockstep() -> None:
    # Forty independent customers' jobs at minute 0 of every hour, from before the stream.
    hourly = tuple((60 * h, 60 * h + 1) for h in range(0, 20))
    det = CoactivityDetector()
    assert _stream(det, 20 * 60, group=40, sessions=hourly) == []
    # The same accounts at irregular times are a group.
    det = CoactivityDetector()
    assert _stream(det, 20 * 60, group=40, sessions=((130, 131), (377, 378), (601, 603)))


def test_warmup_hides_the_start_of_the_stream() -> None:
    # At the start every active account begins a run: not a sync minute.
    det = CoactivityDetector(warmup_minutes=60)
    assert _stream(det, 120, group=50, sessions=((5, 30),)) == []
    det = CoactivityDetector(warmup_minutes=0)
    assert _stream(det, 120, group=50, sessions=((70, 90),))


def test_run_state_is_released_when_runs_stop() -> None:
    det = CoactivityDetector(horizon_s=3600.0)
    _stream(det, 300, group=30, sessions=((100, 120),))
    assert det.tracked["in_run"] < 400
    # After a long silence, nothing is kept for anyone.
    for m in range(300, 300 + 24 * 60, 30):
        det.end_window(T0 + m * 60.0, T0 + m * 60.0 + 60.0)
    assert det.tracked == {"in_run": 0, "recent_runs": 0, "groups": 0, "grouped": 0}


def test_score_is_support_and_works_before_learning() -> None:
    det = CoactivityDetector()
    assert det.score_one({"account_id": "g0", "ts": T0}) == 0.0
    _stream(det, 30 * 60, group=25, sessions=((300, 330), (900, 930)))
    assert det.score_one({"account_id": "g0", "ts": T0}) >= 3.0
    assert det.score_one({"account_id": "bg1", "ts": T0}) <= 1.0


def test_poisson_tail_bound() -> None:
    assert poisson_tail_log10(3, 5.0) == 0.0
    vals = [poisson_tail_log10(k, 4.0) for k in (10, 20, 40)]
    assert vals[0] > vals[1] > vals[2]
    assert poisson_tail_log10(40, 20.0) > poisson_tail_log10(40, 4.0)


def test_loosely_timed_group_is_found_when_it_recurs_and_lists_only_recurring_accounts() -> None:
    # 22 accounts whose starts spread over two minutes: no single minute is proof by itself.
    det = CoactivityDetector(min_members=15)
    sessions = ((200, 230), (700, 720), (1300, 1340), (1900, 1930))
    found = _stream(det, 33 * 60, group=22, sessions=sessions, jitter_s=100.0,
                    background=1500, seed=3)
    assert found
    assert found[0].window_start > T0 + 230 * 60.0  # not at the first start: needed recurrence
    members = set(found[-1].members)
    assert len(members & {f"g{i}" for i in range(22)}) >= 15
    assert len(members - {f"g{i}" for i in range(22)}) <= 2
