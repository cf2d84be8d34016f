"""account_ramp: a young harvest-profiled account harvesting hour after hour (the start of a
slow ramp), and what must stay quiet (benign growth, heavy-tailed sessions, a job winding
down, an old customer's pipeline)."""

from __future__ import annotations

import math
import random
from array import array
from pathlib import Path

import pytest

from detectors.baseline import HEADER, AccountBaseline, StateFormatError
from detectors.events import Event
from detectors.pipeline import Monitor
from detectors.ramp import STATE_SIZE, ramp_observe, ramp_stats, ramp_valid
from detectors.ramp_rule import RampParams, RampRule
from streams.config import ConfigError, load_config

H = 3600.0
DAY = 86400.0
T0 = 200 * DAY


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth: fine for the small rates here.
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p < limit:
            return k
        k += 1


def _events(
    account: str,
    rate_at,                # hour -> requests per hour
    hours: int,
    *,
    seed: int = 1,
    age_days: float = 5.0,
    harvest: bool = True,
    turn: int = 1,
    active=lambda h: True,  # hour -> whether the account works this hour
    card: str | None = None,
    net: str = "10.9.8",
    created_h: float = 0.0,   # hours before T0 - age_days (the signup cohort)
) -> list[Event]:
    rng = random.Random(seed)
    out = []
    for h in range(hours):
        if not active(h):
            continue
        for _ in range(_poisson(rng, rate_at(h))):
            t = T0 + h * H + rng.uniform(0, H)
            long_answer = harvest and rng.random() < 0.75
            out.append(Event(
                account, t, "m", 300,
                int(rng.lognormvariate(7.5, 0.45) if harvest else rng.lognormvariate(5.5, 0.6)),
                event_id=f"{account}-{t:.3f}",
                org_id=f"org-{account}",
                ip=f"{net}.7",
                asn=64512,
                user_agent="python-httpx/0.27.0",
                payment_fingerprint=card or f"card-{account}",
                account_created_ts=T0 - age_days * DAY - created_h * H,
                tier="free",
                status=200,
                stop_reason="max_tokens" if long_answer and rng.random() < 0.45 else "end_turn",
                turn=turn,
                prompt_fingerprint=f"{rng.getrandbits(64):016x}",
            ))
    out.sort(key=lambda e: e.ts)
    return out


def _alerts(events: list[Event]) -> list[dict]:
    """Every alert change (info excluded) of a replay of ``events``."""
    mon = Monitor(coordination=False)
    changes = []
    for ev in sorted(events, key=lambda e: e.ts):
        changes += mon.add(ev)
    changes += mon.flush()
    return [c for c in changes if c["severity"] != "info"]


def _ramp_alerts(events: list[Event]) -> list[dict]:
    return [c for c in _alerts(events) if c["detector"] == "account_ramp"]


def _first_alert_h(alerts: list[dict]) -> float:
    return (min(a["window_start"] for a in alerts) - T0) / H


def _growth(start: float, end: float, span_h: float):
    g = math.log(end / start) / span_h
    return lambda h: start * math.exp(g * (h + 0.5))


# -- the run state -----------------------------------------------------------------------------


def test_run_counts_hours_coverage_and_trend():
    s = array("d", bytes(8 * STATE_SIZE))
    for h in range(13):
        ramp_observe(s, 0, h * H + 10.0, 4 if h % 4 else 0)   # every 4th hour silent
    hours, active, total, z = ramp_stats(s, 0)
    # The run starts at hour 1; hours 1-11 complete (hour 12, under way, has no harvest).
    assert hours == 11 and active == 9 and total == 36
    assert abs(z) < 1.0
    # A rising series: 1, 2, ..., 12 an hour is a clear upward trend.
    s = array("d", bytes(8 * STATE_SIZE))
    for h in range(13):
        ramp_observe(s, 0, h * H + 10.0, h + 1)
    assert ramp_stats(s, 0)[3] > 4.0
    # Falling: the same backwards.
    s = array("d", bytes(8 * STATE_SIZE))
    for h in range(13):
        ramp_observe(s, 0, h * H + 10.0, 13 - h)
    assert ramp_stats(s, 0)[3] < -4.0
    assert ramp_valid(s, 0)


def test_gap_ends_a_run_and_windows_without_harvest_count_as_hours():
    s = array("d", bytes(8 * STATE_SIZE))
    ramp_observe(s, 0, 0.0, 0)                    # no harvest yet: no run
    ramp_observe(s, 0, H, 0)
    assert ramp_stats(s, 0)[0] == 0
    ramp_observe(s, 0, 2 * H, 2)
    assert ramp_stats(s, 0)[:2] == (1.0, 1.0)     # the current hour, once it has harvest
    ramp_observe(s, 0, 3 * H, 0)                  # active, nothing harvest-like
    ramp_observe(s, 0, 4 * H, 0)
    assert ramp_stats(s, 0)[:2] == (2.0, 1.0)
    ramp_observe(s, 0, 5 * H, 1)                  # hour 4 is the second silent one
    assert ramp_stats(s, 0)[:2] == (4.0, 2.0)
    ramp_observe(s, 0, 9 * H, 1)                  # 3 silent hours (5 had harvest): reset
    assert ramp_stats(s, 0)[:3] == (1.0, 1.0, 1.0)   # a new run, in its first hour
    ramp_observe(s, 0, 9 * H + 600, 2)            # same hour: counted in it
    ramp_observe(s, 0, 10 * H, 0)
    assert ramp_stats(s, 0)[:3] == (1.0, 1.0, 3.0)


# -- the rule through the pipeline -------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_pair_ramping_on_one_card_is_a_campaign_within_six_hours(seed: int):
    # mix's ramp-2: two accounts on one card, 3 -> 400 requests an hour over 44 hours; their
    # first 6 hours are 3 -> 6 an hour, far below any rate bar.
    ramp = _growth(3.0, 400.0, 44.0)
    events = (_events("ra", ramp, 7, seed=seed, card="card-op")
              + _events("rb", ramp, 7, seed=seed + 10, card="card-op"))
    camp = [c for c in _alerts(events) if c["detector"] == "cluster_campaign"]
    assert camp, "two young accounts harvesting every hour on one card are a campaign"
    assert _first_alert_h(camp) < 6.0
    assert set(camp[0]["evidence"]["members_sample"]) == {"ra", "rb"}
    # What makes it a campaign is the shared card: the same two accounts on their own
    # cards, addresses and signup hours are no alert (yet: neither is measurably rising).
    alone = (_events("ra", ramp, 7, seed=seed)
             + _events("rb", ramp, 7, seed=seed + 10, net="10.1.2", created_h=5.0))
    assert not _alerts(alone)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_lone_ramp_alerts_once_its_rise_is_measurable(seed: int):
    alerts = _ramp_alerts(_events("ramp", _growth(3.0, 400.0, 44.0), 24, seed=seed))
    assert alerts, "a young harvester ramping up hour after hour must be flagged"
    assert 8.0 < _first_alert_h(alerts) < 18.0
    assert {a["severity"] for a in alerts} == {"warning"}
    signals = {s["signal"]: s["score"] for s in alerts[0]["evidence"]["signals"]}
    assert signals["harvest_trend_z"] >= 4.0


def test_a_flat_sustained_harvester_alone_is_no_alert():
    # Sustained (a harvester for the pair rule) but flat: one hydra member, say.
    assert not _alerts(_events("flat", lambda h: 3.0, 36))


def test_quiet_on_benign_growth():
    # A young conversational customer growing 3 -> 60 an hour (multi-turn, short answers).
    grow = _growth(3.0, 60.0, 24.0)
    assert not _alerts(_events("grow", grow, 24, harvest=False, turn=3))
    # Two of them on one card (a team): no campaign either.
    assert not _alerts(_events("g1", grow, 24, harvest=False, turn=3, card="card-team")
                       + _events("g2", grow, 24, harvest=False, turn=3, card="card-team",
                                 seed=5))
    # A long-standing customer's single-turn pipeline with long answers, growing the same:
    # an old account is never a ramp here (account_extraction judges its rate).
    assert not _ramp_alerts(_events("old", grow, 24, age_days=400))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_quiet_on_heavy_tailed_sessions(seed: int):
    # A young account with the harvest profile working like a person: one to three sessions
    # a day of one to three hours, Pareto-sized (up to 200 requests an hour), with gaps of
    # three hours or more between them. Loud hours, but never hour after hour.
    rng = random.Random(100 + seed)
    sizes: dict[int, float] = {}
    for d in range(4):
        h = 24 * d + rng.randint(6, 10)
        for _ in range(rng.randint(1, 3)):
            for k in range(rng.randint(1, 3)):
                sizes[h + k] = min(200.0, rng.paretovariate(1.2) * 2)
            h += 3 + 3 + rng.randint(0, 3)
    events = _events("sess", lambda h: sizes.get(h, 0.0), 96, seed=seed,
                     active=lambda h: h in sizes)
    assert len(events) > 20
    assert not _ramp_alerts(events)


def test_quiet_while_a_job_winds_down():
    # A young account's harvest-like batch falling from 60 to 2 an hour: not sustained.
    assert not _ramp_alerts(_events("down", _growth(60.0, 2.0, 10.0), 12))


def test_rule_parameters_gate():
    rule = RampRule(RampParams(min_hours=5, min_coverage=0.8, trend_z=-1.0, alert_z=4.0))
    ok = {"extraction": 0.7, "young": True, "hours": 5.0, "active": 4.0, "trend_z": -1.0}
    assert rule.sustained(**ok) and not rule.fires(**ok)
    assert not rule.sustained(**{**ok, "extraction": 0.69})
    assert not rule.sustained(**{**ok, "hours": 4.0, "active": 4.0})
    assert not rule.sustained(**{**ok, "active": 3.9})
    assert not rule.sustained(**{**ok, "trend_z": -1.01})
    assert rule.fires(**{**ok, "trend_z": 4.0})
    assert not rule.fires(**{**ok, "trend_z": 4.0, "young": False})


# -- state -------------------------------------------------------------------------------------


def test_state_round_trips_with_the_run():
    base = AccountBaseline()
    for h in range(8):
        base.observe(h * H, h * H + 30, 3, 6000, 1.0, 0.3, T0 - 5 * DAY, 2)
        base.observe_ramp(h * H, 2, 3)
    blob = base.to_bytes()
    back = AccountBaseline.from_bytes(blob)
    assert back.ramp_stats() == base.ramp_stats() == (8.0, 8.0, 16.0, 0.0)
    assert back.to_bytes() == blob
    # Forged run state is refused, never restored.
    s = array("d")
    s.frombytes(blob[HEADER.size:])
    for slot, value in ((-5, -1.0), (-4, 1e12), (-1, math.nan)):   # CUR, K, S1
        bad = array("d", s)
        bad[slot] = value
        with pytest.raises(StateFormatError, match="ramp"):
            AccountBaseline.from_bytes(blob[:HEADER.size] + bad.tobytes())
    with pytest.raises(StateFormatError):
        AccountBaseline.from_bytes(b"\x80\x05" + bytes(100))     # pickle is never read


def test_config_fields(tmp_path: Path):
    p = tmp_path / "c.toml"
    p.write_text("[detection]\nramp_min_hours = 8\nramp_trend_z = 0.5\nramp_alert_z = 5\n")
    params = load_config(p, environ={}).detection_params()
    assert params.ramp == RampParams(min_hours=8, trend_z=0.5, alert_z=5.0)
    p.write_text("[detection]\nramp_min_coverage = 0\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p, environ={})
    assert exc.value.errors[0][0] == "detection.ramp_min_coverage"
