"""evaluate on hand-made labels, alerts and events whose answers are worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from evaluation.baseline import rate_limit_score
from evaluation.score import Labels, score
from streams.cli import main

DAY = 86400.0


def _labels() -> list[dict[str, Any]]:
    """2 days; campaign c1 (hydra, 4 accounts, starts at hour 10); campaign c2 (burst, 1
    account, never flagged); 10 benign accounts (2 of them a trap population)."""
    recs: list[dict[str, Any]] = [
        {"type": "scenario", "name": "hand", "start_ts": 0.0, "end_ts": 2 * DAY},
        {"type": "campaign", "campaign_id": "c1", "kind": "hydra", "start_ts": 36000.0,
         "end_ts": 2 * DAY, "accounts": 4},
        {"type": "campaign", "campaign_id": "c2", "kind": "burst", "start_ts": 45000.0,
         "end_ts": 60000.0, "accounts": 1},
    ]
    recs += [{"type": "account", "account_id": f"h{i}", "label": "campaign",
              "campaign_id": "c1", "population": "campaign:hydra"} for i in range(4)]
    recs.append({"type": "account", "account_id": "b0", "label": "campaign",
                 "campaign_id": "c2", "population": "campaign:burst"})
    recs += [{"type": "account", "account_id": f"n{i}", "label": "benign", "campaign_id": None,
              "population": "benign" if i < 8 else "trap:tool"} for i in range(10)]
    return recs


def _alert(aid: str, entity: str, ts: float, severity: str = "warning", state: str = "opened",
           detector: str = "d1", members: list[str] | None = None) -> dict[str, Any]:
    out = {"alert_id": aid, "state": state, "entity_type": "cluster" if members else "account",
           "entity_id": entity, "detector": detector, "severity": severity, "ts": ts,
           "score": 1.0, "evidence": {}}
    if members is not None:
        out["member_count"] = len(members)
        out["members"] = members
    return out


ALERTS = [
    # Info alerts never flag anybody.
    _alert("i1", "n0", 100.0, severity="info"),
    # A benign account flagged (false alert, warning).
    _alert("a1", "n1", 20000.0),
    _alert("a1", "n1", 20600.0, state="resolved"),
    # Cluster alert: 3 of 4 members from c1, one benign member -> true alert; flags h0,h1,h2
    # at 37800 (30 min after the campaign start) and n2.
    _alert("k1", "cl-1", 37800.0, detector="cluster", members=["h0", "h1", "h2", "n2"]),
    # Later the cluster grows to h3, and escalates.
    _alert("k1", "cl-1", 40000.0, severity="critical", state="updated", detector="cluster",
           members=["h0", "h1", "h2", "h3", "n2"]),
    # A critical false alert on the trap population.
    _alert("a2", "n9", 55000.0, severity="critical", detector="d2"),
    # An account alert on a campaign account, later than the cluster's.
    _alert("a3", "h0", 45000.0),
]


def test_known_answers() -> None:
    labels = Labels.from_records(_labels())
    r = score(labels, ALERTS)
    # Flagged: h0..h3 (campaign), n1, n2, n9 (benign).
    assert (r.flagged_campaign, r.flagged_benign) == (4, 3)
    assert r.precision == pytest.approx(4 / 7)
    assert r.recall == pytest.approx(4 / 5)
    assert (r.alerts, r.false_alerts, r.critical_false_alerts) == (4, 2, 1)
    # 2 false alerts, 10 benign accounts, 2 days -> 2 / 0.01 / 2 = 100 per 1k per day.
    assert r.false_alerts_per_1k_day == pytest.approx(100.0)
    c1, c2 = r.campaigns
    assert c1.detected and c1.delay_s == pytest.approx(1800.0) and c1.share_flagged == 1.0
    assert not c2.detected and c2.delay_s is None and c2.share_flagged == 0.0
    dets = {d.detector: d for d in r.detectors}
    assert (dets["cluster"].alerts, dets["cluster"].false_alerts) == (1, 0)
    assert (dets["cluster"].campaign_accounts, dets["cluster"].benign_accounts) == (4, 1)
    assert (dets["d1"].alerts, dets["d1"].false_alerts) == (2, 1)
    assert (dets["d2"].critical_false, dets["d2"].precision) == (1, 0.0)
    pops = {p.population: p for p in r.populations}
    assert (pops["trap:tool"].accounts, pops["trap:tool"].flagged) == (2, 1)
    assert pops["trap:tool"].critical_alerts == 1
    assert pops["benign"].critical_alerts == 1  # n2 is listed in the critical cluster update
    assert pops["campaign:hydra"].critical_alerts == 1


def test_a_cluster_of_mostly_benign_members_is_false() -> None:
    labels = Labels.from_records(_labels())
    r = score(labels, [_alert("k", "cl", 40000.0, members=["h0", "n0", "n1"])])
    assert r.false_alerts == 1 and r.flagged_campaign == 1


def test_flag_before_campaign_start_is_not_a_detection() -> None:
    labels = Labels.from_records(_labels())
    r = score(labels, [_alert("a", "h0", 1000.0)])
    assert r.campaigns[0].delay_s is None and r.campaigns[0].flagged == 1


def _events(path: Path) -> None:
    """Hourly counts: n0 sends 5/h every hour of day 1; n1 spikes to 30 in hour 3; h0 sends
    12/h in hours 10-11; b0 sends 100 in hour 13 (its campaign starts at 45000 s, in hour 12)."""
    lines = []

    def burst(acct: str, hour: int, k: int) -> None:
        for i in range(k):
            lines.append({"account_id": acct, "ts": hour * 3600 + i * (3600 / k), "model": "m",
                          "input_tokens": 1, "output_tokens": 1})

    for h in range(24):
        burst("n0", h, 5)
    burst("n1", 3, 30)
    burst("h0", 10, 12)
    burst("h0", 11, 12)
    burst("b0", 13, 100)
    lines.sort(key=lambda e: e["ts"])
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines) + b"not json\n")


def test_rate_limit_baseline_matches_the_false_alert_budget(tmp_path: Path) -> None:
    labels = Labels.from_records(_labels())
    ev = tmp_path / "events.jsonl"
    _events(ev)
    # Budget 0 false alerts: T must sit at n1's 30/h, so only b0 (100/h) is caught.
    limit, s = rate_limit_score(labels, ev, 0)
    assert limit == 30
    assert (s.flagged_campaign, s.flagged_benign, s.false_alerts) == (1, 0, 0)
    c1, c2 = s.campaigns
    assert not c1.detected and c2.detected
    # b0's 31st request of hour 13 (100 evenly spaced) crossed the limit.
    assert c2.delay_s == pytest.approx(13 * 3600 + 30 * 36 - 45000.0)
    # Budget 1: T drops to n0's steady 5/h; n1's spike is the one false alert, and h0's
    # 12/h (one episode over two consecutive hours) is caught.
    limit, s = rate_limit_score(labels, ev, 1)
    assert limit == 5 and s.false_alerts == 1 and s.flagged_campaign == 2
    assert s.campaigns[0].delay_s == pytest.approx(10 * 3600 + 5 * 300 - 36000.0)
    # Budget 2: n0 over the limit all day is one episode, so any limit fits: T = 0.
    limit, s = rate_limit_score(labels, ev, 2)
    assert limit == 0 and s.false_alerts == 2 and s.flagged_benign == 2


def test_cli_table_and_json(tmp_path: Path, capsys) -> None:
    lab, al, ev = tmp_path / "l.jsonl", tmp_path / "a.jsonl", tmp_path / "e.jsonl"
    lab.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in _labels()))
    al.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ALERTS))
    _events(ev)
    assert main(["evaluate", "--labels", str(lab), "--alerts", str(al), "--events", str(ev)]) == 0
    table = capsys.readouterr().out
    assert "precision (accounts)" in table and "rate limit T=" in table
    assert "campaign c1 (hydra, 4 accounts)" in table and "30.0 min" in table
    assert main(["evaluate", "--labels", str(lab), "--alerts", str(al), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["distillwatch"]["recall"] == pytest.approx(0.8)
    assert out["distillwatch"]["campaigns"][0]["delay_s"] == pytest.approx(1800.0)
    assert "rate_limit" not in out


def test_cli_reports_bad_labels(tmp_path: Path, capsys) -> None:
    lab, al = tmp_path / "l.jsonl", tmp_path / "a.jsonl"
    lab.write_text('{"type": "account", "account_id": "x", "label": "benign"}\n')
    al.write_text("")
    assert main(["evaluate", "--labels", str(lab), "--alerts", str(al)]) == 2
    assert "no scenario record" in capsys.readouterr().err
