"""Swarms, lockstep groups and their benign look-alikes have the traits the issue names."""

from __future__ import annotations

from collections import Counter

import numpy as np

from simulator.generate import generate
from simulator.scenario import scenario_from_dict

META = {"name": "t", "start": "2026-01-05T00:00:00Z"}


def _accounts(sim, population: str) -> np.ndarray:
    return np.array([i for i, p in enumerate(sim.tables.population) if p == population])


def test_swarm_accounts_are_fresh_brief_and_share_cards_in_small_cells() -> None:
    s = scenario_from_dict({
        "scenario": {**META, "duration_h": 80},
        "campaigns": [{"kind": "swarm", "id": "s", "accounts": 120, "start_h": 2,
                       "duration_h": 72, "accounts_per_payment": 4}],
    })
    sim = generate(s, seed=3)
    rows = _accounts(sim, "campaign:swarm")
    assert len(rows) == 120
    ev = sim.events
    created = np.array(sim.tables.created)
    for r in rows.tolist():
        ts = ev.ts[ev.acct == r]
        assert 2 <= len(ts) <= 8
        assert ts.max() - ts.min() < 3600.0  # a handful within minutes, then abandoned
        assert 0 < ts.min() - created[r] <= 24 * 3600.0  # first use within a day of signup
    cells = Counter(sim.tables.payment[r] for r in rows.tolist())
    assert max(cells.values()) <= 4 and len(cells) >= 30
    # Waves spread over the days of the campaign, not one burst.
    days = {int((ev.ts[ev.acct == r].min() - sim.t0) // 86400) for r in rows.tolist()}
    assert len(days) >= 3
    mine = np.isin(ev.acct, rows)
    assert (ev.stop[mine] == 1).mean() > 0.4  # answers cut at max_tokens
    assert len({sim.tables.nets[n][1] for n in ev.net[mine].tolist()}) <= 3


def test_lockstep_members_start_and_stop_in_the_same_minutes() -> None:
    s = scenario_from_dict({
        "scenario": {**META, "duration_h": 50},
        "campaigns": [{"kind": "lockstep", "id": "l", "accounts": 30, "start_h": 1,
                       "duration_h": 48, "participation": 1.0, "jitter_s": 10}],
    })
    sim = generate(s, seed=5)
    rows = _accounts(sim, "campaign:lockstep")
    ev = sim.events
    firsts = []
    for r in rows.tolist():
        ts = np.sort(ev.ts[ev.acct == r])
        firsts.append(ts[0])
        assert len(ts) < 400  # ordinary volume
    # Every member's first request of the first session lies within the jitter.
    assert max(firsts) - min(firsts) <= 10.0
    # Sessions repeat on both days, with the same members each time.
    days = Counter(int((t - sim.t0) // 86400) for t in ev.ts[np.isin(ev.acct, rows)].tolist())
    assert len(days) >= 2


def test_lookalikes_are_one_org_or_independent_users() -> None:
    s = scenario_from_dict({
        "scenario": {**META, "duration_h": 30},
        "traps": [
            {"kind": "class_cohort", "accounts": 50, "start_h": 2},
            {"kind": "sso_onboarding", "accounts": 60, "start_h": 3},
            {"kind": "cron_fleet", "accounts": 10},
            {"kind": "app_template", "accounts": 100},
        ],
    })
    sim = generate(s, seed=2)
    t = sim.tables
    ev = sim.events
    for pop in ("trap:class-cohort", "trap:sso-onboarding", "trap:cron-fleet"):
        rows = _accounts(sim, pop)
        assert len({t.org[r] for r in rows.tolist()}) == 1, pop
        assert all(t.campaign[r] is None for r in rows.tolist())
        assert np.isin(rows, ev.acct).mean() > 0.9, pop
    cls = _accounts(sim, "trap:class-cohort")
    created = np.array(t.created)[cls]
    assert created.max() - created.min() <= 3600.0
    cron = _accounts(sim, "trap:cron-fleet")
    minutes = ((ev.ts[np.isin(ev.acct, cron)] % 3600) // 60).astype(int)
    assert set(minutes.tolist()) <= {7}
    app = _accounts(sim, "trap:app-template")
    assert len({t.org[r] for r in app.tolist()}) == 1  # -1: each its own org
    assert t.org[app[0]] == -1
