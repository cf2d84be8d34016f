"""bench.swarm end to end on small scenarios: simulate, window, detect, alert, score."""

from __future__ import annotations

from pathlib import Path

from bench.swarm import run

CAMPAIGNS = """
[scenario]
name = "small_coordination"
start = 2026-01-05T06:00:00Z
duration_h = 10

[benign]
accounts = 300

[[campaigns]]
kind = "swarm"
id = "sw"
accounts = 40
start_h = 2.0
duration_h = 6.0
waves_per_day = 4.0
wave_h = 1.5

[[campaigns]]
kind = "lockstep"
id = "ls"
accounts = 25
start_h = 2.5
duration_h = 7.0
sessions_per_day = 8.0
"""

TRAPS = """
[scenario]
name = "small_lookalikes"
start = 2026-01-05T06:00:00Z
duration_h = 10

[benign]
accounts = 300

[[traps]]
kind = "class_cohort"
accounts = 60
start_h = 2.0

[[traps]]
kind = "cron_fleet"
accounts = 25

[[traps]]
kind = "app_template"
accounts = 200
new_share = 0.5
"""


def test_swarm_and_lockstep_are_found_early_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CAMPAIGNS)
    sc, info = run(path, seed=1)
    assert info["events"] > 1000
    by_id = {c.campaign_id: c for c in sc.campaigns}
    for cid in ("sw", "ls"):
        c = by_id[cid]
        assert c.detected, cid
        assert c.share_flagged >= 0.9, (cid, c.share_flagged)
        assert c.delay_s is not None and c.delay_s <= 90 * 60, (cid, c.delay_s)
    assert sc.false_alerts == 0


def test_lookalikes_stay_quiet(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(TRAPS)
    sc, _ = run(path, seed=1)
    assert sc.alerts == 0 and sc.flagged_benign == 0
