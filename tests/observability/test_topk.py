"""The bounded top-k of the worst open entities: ranking, harvest, lifecycle, bounds."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from detectors.alerts import alert_id
from streams.topk import TopKCollector, WorstEntities


def _finding(etype: str, entity: str, score: float, end: float, *, tokens: float = 100.0,
             severity: str = "warning", members: int | None = None,
             detector: str = "account_baseline") -> dict[str, Any]:
    return {
        "type": "finding", "entity_type": etype, "entity_id": entity, "detector": detector,
        "severity": severity, "score": score, "threshold": 5.0, "window_start": end - 60,
        "window_end": end, "member_count": members,
        "evidence": {"features": {"output_tokens": tokens}},
    }


def _change(state: str, msg: dict[str, Any]) -> dict[str, Any]:
    aid = alert_id(msg["entity_type"], msg["entity_id"], msg["detector"], msg["window_start"])
    return {"state": state, "alert_id": aid, "entity_type": msg["entity_type"],
            "entity_id": msg["entity_id"], "detector": msg["detector"],
            "severity": msg["severity"]}


@pytest.fixture
def setup() -> tuple[WorstEntities, CollectorRegistry]:
    worst = WorstEntities(k=3)
    reg = CollectorRegistry()
    reg.register(TopKCollector(worst))
    return worst, reg


def _val(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(f"distillwatch_{name}", labels)


def test_ranks_by_severity_then_ratio_and_caps_at_k(setup):
    worst, reg = setup
    for i, score in enumerate([10.0, 40.0, 20.0, 30.0, 15.0]):
        f = _finding("account", f"acct-{i}", score, 60)
        worst.update(f, [_change("opened", f)])
    crit = _finding("account", "acct-crit", 6.0, 60, severity="critical")
    worst.update(crit, [_change("opened", crit)])
    ranks = worst.top("account")
    assert [r.rank for r in ranks] == [1, 2, 3]
    # A critical alert outranks any warning, whatever its ratio.
    assert ranks[0].alert_id == alert_id("account", "acct-crit", "account_baseline", 0)
    assert ranks[0].ratio == pytest.approx(1.2)
    assert [r.ratio for r in ranks[1:]] == [8.0, 6.0]
    assert _val(reg, "top_entity_score_ratio", entity_type="account", rank="4") is None
    assert _val(reg, "top_entity_severity", entity_type="account", rank="1") == 2
    assert _val(reg, "flagged_entities", entity_type="account", severity="warning") == 5
    assert _val(reg, "flagged_entities", entity_type="cluster", severity="critical") == 0


def test_harvest_accumulates_once_per_window_and_resolution_drops(setup):
    worst, reg = setup
    f1 = _finding("cluster", "tmpl-9", 20, 60, tokens=1000, members=400, detector="cluster_x")
    worst.update(f1, [_change("opened", f1)])
    f2 = _finding("cluster", "tmpl-9", 25, 120, tokens=3000, members=900, detector="cluster_x")
    worst.update(f2, [])
    worst.update(f2, [])  # redelivered: same window, counted once
    labels = {"entity_type": "cluster", "rank": "1"}
    assert _val(reg, "top_entity_output_tokens", **labels) == 4000
    assert _val(reg, "top_entity_members", **labels) == 900
    assert _val(reg, "top_entity_first_flagged_timestamp_seconds", **labels) == 0
    assert _val(reg, "flagged_members", entity_type="cluster") == 900
    assert _val(reg, "flagged_output_tokens", entity_type="cluster") == 4000
    aid = alert_id("cluster", "tmpl-9", "cluster_x", 0)
    info = {**labels, "alert_id": aid, "detector": "cluster_x", "severity": "warning"}
    assert _val(reg, "top_entity_info", **info) == 1

    worst.update({"type": "watermark", "ts": 500}, [_change("resolved", f2)])
    assert len(worst) == 0
    assert _val(reg, "top_entity_members", **labels) is None
    assert _val(reg, "flagged_members", entity_type="cluster") == 0


def test_cluster_harvest_is_the_detectors_running_total(setup):
    worst, reg = setup
    f1 = _finding("cluster", "c1", 20, 60, members=50, detector="cluster_campaign")
    f1["evidence"]["harvest"] = {"requests": 900, "output_tokens": 250_000}
    worst.update(f1, [_change("opened", f1)])
    f2 = _finding("cluster", "c1", 20, 120, members=80, detector="cluster_campaign")
    f2["evidence"]["harvest"] = {"requests": 1500, "output_tokens": 410_000}
    worst.update(f2, [])
    labels = {"entity_type": "cluster", "rank": "1"}
    assert _val(reg, "top_entity_output_tokens", **labels) == 410_000


def test_one_entity_with_two_detectors_counts_once_by_its_worst_alert(setup):
    worst, reg = setup
    a = _finding("cluster", "c1", 10, 60, members=50, detector="cluster_campaign",
                 severity="critical")
    a["evidence"]["harvest"] = {"output_tokens": 9000}
    b = _finding("cluster", "c1", 40, 60, members=45, detector="cluster_model_pivot")
    worst.update(a, [_change("opened", a)])
    worst.update(b, [_change("opened", b)])
    assert len(worst) == 2  # two open alerts...
    ranks = worst.top("cluster")
    assert len(ranks) == 1  # ...one campaign
    assert ranks[0].detector == "cluster_campaign" and ranks[0].severity == "critical"
    assert ranks[0].members == 50 and ranks[0].output_tokens == 9000
    assert _val(reg, "flagged_entities", entity_type="cluster", severity="critical") == 1
    assert _val(reg, "flagged_entities", entity_type="cluster", severity="warning") == 0
    assert _val(reg, "flagged_members", entity_type="cluster") == 50


def test_finding_without_open_alert_is_not_tracked(setup):
    worst, _reg = setup
    # A redelivered finding after resolution: AlertBook ignores it, so must the ranking.
    worst.update(_finding("account", "old", 50, 60), [])
    assert len(worst) == 0


def test_no_entity_id_in_exposition(setup):
    worst, reg = setup
    for i in range(50):
        f = _finding("account", f"secret-account-{i}", 10 + i, 60)
        worst.update(f, [_change("opened", f)])
    text = generate_latest(reg).decode()
    assert "secret-account" not in text
    prefix = "distillwatch_top_entity_score_ratio{"
    ranked = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    assert len(ranked) == 3


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        WorstEntities(k=0)
