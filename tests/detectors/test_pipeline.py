"""The detection path on small synthetic traffic: hydra caught, look-alikes quiet."""

from __future__ import annotations

from typing import Any

from detectors.events import Event
from detectors.pipeline import Detection, Monitor
from tests.detectors.synth import T0, benign, hydra, merged


def _run(events: list[Event], **kw: Any) -> list[dict[str, Any]]:
    mon = Monitor(**kw)
    changes = []
    for ev in events:
        changes += mon.add(ev)
    return changes + mon.flush()


def _flagged(changes: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for c in changes:
        if c["state"] != "resolved" and c["severity"] in ("warning", "critical"):
            out.update(c.get("members") or [c["entity_id"]])
    return out


def test_hydra_is_one_campaign_with_its_members_and_evidence():
    h = hydra(n=200, hours=3)
    changes = _run(merged(h, benign(n=300, hours=3)))
    clusters = [c for c in changes if c["entity_type"] == "cluster"]
    assert clusters, "hydra not detected"
    first = min(c["ts"] for c in clusters if c["state"] == "opened")
    assert first - T0 <= 30 * 60
    assert len({c["entity_id"] for c in clusters if c["detector"] == "cluster_campaign"}) == 1
    flagged = _flagged(changes)
    hydra_ids = {e.account_id for e in h}
    assert len(flagged & hydra_ids) >= 0.95 * len(hydra_ids)
    assert not {a for a in flagged if a.startswith("b")}
    # The campaign's own alert (cohort_swarm may also list the hydra's young accounts).
    last = [c for c in clusters
            if c["state"] == "updated" and c["detector"] == "cluster_campaign"][-1]
    ev = last["evidence"]
    assert {"features", "baseline", "score", "threshold", "signals"} <= set(ev)
    assert last["member_count"] == len(last["members"]) >= 190
    kinds = {a["key"].split(":")[0] for a in ev["shared_attributes"]}
    assert {"ip24", "pay"} <= kinds
    assert any(c["severity"] == "critical" for c in clusters)


def test_popular_tool_with_one_system_prompt_stays_quiet():
    changes = _run(benign(n=400, hours=3, system_prompt="0123456789abcdef"))
    assert not [c for c in changes if c["severity"] in ("warning", "critical")]


def test_old_accounts_of_one_org_running_evals_are_not_a_campaign():
    evals = hydra(n=50, hours=3, prefix="r", org="org-research", age_days=400)
    changes = _run(merged(evals, benign(n=200, hours=3)))
    assert not [c for c in changes if c["entity_type"] == "cluster"]


def test_campaign_id_is_stable_when_members_are_replaced():
    first = hydra(n=120, hours=2, seed=5, prefix="old")
    second = hydra(n=120, hours=2, seed=5, prefix="new", start=T0 + 2 * 3600)
    changes = _run(merged(first, second, benign(n=100, hours=4)))
    ids = {c["entity_id"] for c in changes if c["detector"] == "cluster_campaign"}
    assert len(ids) == 1
    flagged = _flagged(changes)
    assert sum(a.startswith("new") for a in flagged) >= 110


def test_detection_keeps_the_worker_contract():
    det = Detection(window_s=60, lateness_s=5)
    assert det.add(Event("a", T0, "m", 1, 1, event_id="x"))
    assert not det.add(Event("a", T0, "m", 1, 1, event_id="x"))
    assert det.advance(T0 + 30) == [] and det.windows_closed == 0
    det.advance(T0 + 200)
    assert det.windows_closed == 1 and det.active_accounts == 1


def test_account_ramp_opens_one_alert_with_evidence():
    events = []
    for w in range(30):
        n = 3 if w < 25 else 90
        events += [
            Event("ramp", T0 + w * 60 + i * (50 / n), "m", 100, 2000, turn=1, tier="pro",
                  account_created_ts=T0 - 3 * 86400)
            for i in range(n)
        ]
    changes = _run(events)
    opened = [c for c in changes if c["state"] == "opened"]
    assert [(c["entity_id"], c["detector"]) for c in opened] == [("ramp", "account_baseline")]
    ev = opened[0]["evidence"]
    assert ev["features"]["requests"] > 10 * ev["baseline"]["requests"]
    assert ev["signals"][0]["score"] >= ev["threshold"]
    assert opened[0]["severity"] in ("warning", "critical")


def test_a_campaign_bigger_than_the_member_cap_is_listed_in_parts():
    h = hydra(n=150, hours=2, seed=9)
    changes = _run(merged(h, benign(n=50, hours=2)), max_members=60)
    ids = {c["entity_id"] for c in changes if c["detector"] == "cluster_campaign"}
    base = min(ids, key=len)
    assert {base, f"{base}/2", f"{base}/3"} <= ids
    listed = _flagged([c for c in changes if c["detector"] == "cluster_campaign"])
    assert all(len(c["members"]) <= 60 for c in changes if c["entity_type"] == "cluster")
    assert len(listed & {e.account_id for e in h}) >= 0.95 * 150
