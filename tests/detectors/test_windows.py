from __future__ import annotations

import math

from detectors.events import Event
from detectors.features import FEATURE_NAMES, window_features
from detectors.windows import AccountWindow, Windower


def _ev(ts: float, **kw) -> Event:
    return Event("a", ts, kw.pop("model", "m"), kw.pop("inp", 100), kw.pop("out", 200), **kw)


def test_rich_counters_and_features():
    w = AccountWindow()
    w.add(_ev(0.0, out=4096, stop_reason="max_tokens", turn=1, ip="1.1.1.1", asn=1,
              user_agent="x", prompt_fingerprint="00000000000000f0", status=200))
    w.add(_ev(10.0, out=1600, turn=1, ip="1.1.1.2", asn=1, user_agent="x",
              prompt_fingerprint="00000000000000f1", status=200))
    w.add(_ev(20.0, out=100, turn=3, ip="1.1.1.1", asn=2, user_agent="y", model="m2",
              prompt_fingerprint="ffffffffffffffff", status=429))
    w.add(_ev(30.0, out=0, status=500, prompt_fingerprint="ffffffffffffffff"))
    f = window_features(w)
    assert set(f) == set(FEATURE_NAMES)
    assert f["requests"] == 4 and f["max_tokens_share"] == 0.25
    assert w.harvest_like == 2  # the max_tokens stop and the 1,600-token single-turn answer
    assert f["single_turn_share"] == 0.75
    assert f["error_share"] == 0.5 and f["rate_limited_share"] == 0.25
    assert f["distinct_ips"] == 2 and f["distinct_asns"] == 2 and f["distinct_user_agents"] == 2
    assert f["distinct_prompts"] == 3
    # f1 is near f0; the repeated ffff.. is an exact duplicate.
    assert w.near_dups == 2
    assert f["interarrival_cv"] == 0.0 and f["active_seconds"] == 30.0
    assert w.models == {"m": 3, "m2": 1}
    assert math.isnan(f["account_age_days"])


def test_single_event_window_has_no_cv_and_known_age():
    w = AccountWindow()
    w.add(_ev(86400.0 * 3, account_created_ts=86400.0))
    f = window_features(w)
    assert math.isnan(f["interarrival_cv"]) and f["account_age_days"] == 2.0


def test_next_close_lets_callers_skip_scans():
    w = Windower(size_s=60, lateness_s=10)
    w.add(_ev(125.0))
    assert w.next_close == 120 + 60 + 10
    assert list(w.close_until(w.next_close - 1)) == []
    assert [c.start for c in w.close_until(w.next_close)] == [120.0]
    assert w.next_close == 180 + 60 + 10


def test_a_window_made_from_its_first_event_is_init_then_add() -> None:
    """AccountWindow(ev) (one pass, the common case of one event per account-window) leaves
    every slot as AccountWindow() then add(ev) does, and later events add the same."""
    import random

    rng = random.Random(5)

    def event(i: int) -> Event:
        return Event(
            "a", 1000.0 + rng.choice([0.0, 1.5, -2.0, 30.0]) + i, rng.choice(["m", "n"]),
            rng.randrange(0, 5000), rng.choice([0, 10, 1499, 1500, 1501, 9000]),
            org_id=rng.choice([None, "o1", "o2"]), ip=rng.choice([None, "1.2.3.4", "::1"]),
            asn=rng.choice([None, 0, 7]), user_agent=rng.choice([None, "ua"]),
            status=rng.choice([None, 200, 399, 400, 404, 429, 500]),
            stop_reason=rng.choice([None, "end_turn", "max_tokens", "length", "stop"]),
            turn=rng.choice([None, 0, 1, 2, 9]),
            prompt_fingerprint=rng.choice([None, "00000000000000ff", "00000000000000fe",
                                           f"{rng.getrandbits(64):016x}", "zz"]),
        )

    def slots(w: AccountWindow) -> dict[str, object]:
        return {name: getattr(w, name) for name in AccountWindow.__slots__}

    for _ in range(3000):
        evs = [event(i) for i in range(rng.choice([1, 1, 2, 5]))]
        one, two = AccountWindow(evs[0]), AccountWindow()
        two.add(evs[0])
        assert slots(one) == slots(two)
        for ev in evs[1:]:
            one.add(ev)
            two.add(ev)
        assert slots(one) == slots(two)
