"""Swarm groups that are a campaign's accounts are folded into the campaign's alert; other
swarms stay alerts of their own; the groups' trip through the cluster stages is checked."""

from __future__ import annotations

import random
from typing import Any

import orjson

from detectors.assembly import CampaignAssembly
from detectors.clusters import ClusterDetector
from detectors.events import Event
from detectors.findings import Finding
from detectors.keycount import KeyCounter
from detectors.pipeline import Monitor
from detectors.summary import AccountSummary, decode, encode, route
from tests.detectors.synth import T0, benign, hydra, merged


def _group(gid: str, members: list[str], start: float = 0.0) -> Finding:
    return Finding("cluster", gid, "cohort_swarm", start, start + 60.0, 2.0, 1.0, "warning",
                   {"features": {"young_members": len(members)}}, member_count=len(members),
                   members=members, member_orgs={m: f"o-{m}" for m in members})


def _campaign(det: ClusterDetector, minutes: int) -> list[Finding]:
    """A 10-account campaign on one card; the findings of its last window."""
    out: list[Finding] = []
    for minute in range(minutes):
        for i in range(10):
            det.observe(f"h{i}", [("pay", "card-1")], extraction=0.8, young=True, regular=True,
                        requests=1, output_tokens=2000, org=None, models=None,
                        ts=minute * 60.0)
        out = det.end_window(minute * 60.0, minute * 60.0 + 60.0)
    return out


def test_a_group_of_campaign_members_is_folded_and_others_stay_alone() -> None:
    det = ClusterDetector(window_s=60, cluster_windows=10, min_members=5)
    assert [f.detector for f in _campaign(det, 3)] == ["cluster_campaign"]
    ours = _group("swarm-h0", [f"h{i}" for i in range(8)] + ["x1", "x2"])
    strangers = _group("swarm-y0", [f"y{i}" for i in range(6)])
    half = _group("swarm-z0", ["h9", "z1", "z2"])  # 1 of 3 in the campaign: not its
    det.observe("h0", [("pay", "card-1")], extraction=0.8, young=True, regular=True,
                requests=1, output_tokens=2000, org=None, models=None, ts=180.0)
    out = det.end_window(180.0, 240.0, [ours, strangers, half])
    assert [f.entity_id for f in out if f.detector == "cohort_swarm"] == ["swarm-y0", "swarm-z0"]
    (camp,) = [f for f in out if f.detector == "cluster_campaign"]
    # The swarm's members outside the campaign's keys join it, with their orgs.
    assert {"x1", "x2"} <= set(camp.members or []) and camp.member_count == 12
    assert (camp.member_orgs or {})["x1"] == "o-x1"
    assert camp.evidence["folded_groups"] == [{"group": "swarm-h0", "members": 10}]
    # Reported again with a new member: it stays folded and the member joins.
    grown = _group("swarm-h0", [f"h{i}" for i in range(8)] + ["x1", "x2", "x3"])
    out = det.end_window(240.0, 300.0, [grown])
    assert [f.detector for f in out] == ["cluster_campaign"]
    assert "x3" in (out[0].members or []) and out[0].evidence["folded_groups"][0]["members"] == 11


def test_a_quiet_campaign_keeps_its_group_silent() -> None:
    det = ClusterDetector(window_s=60, cluster_windows=10, min_members=5, hold_windows=1)
    _campaign(det, 3)
    late = 4 * 3600.0  # long after the hold: the campaign has no finding of its own
    out = det.end_window(late, late + 60.0, [_group("swarm-h0", [f"h{i}" for i in range(6)])])
    assert out == []


def test_groups_ride_once_per_window_through_the_key_stage() -> None:
    s = AccountSummary("a1", 600.0, [("pay", "card-1"), ("asn", 64500)], 0.8, True, False, 3,
                       900, None, {"m": 3}, [])
    g = _group("swarm-a1", ["a1", "a2"], 600.0)
    batches = route(600.0, 1, [s], parts=4, suspicious=0.5, groups=[g])
    assert [q for q, b in batches.items() if "g" in b] == [1]
    # Without groups a batch keeps its old bytes (no empty "g").
    plain = route(600.0, 1, [s], parts=4, suspicious=0.5)
    assert all("g" not in b for b in plain.values())
    kc = KeyCounter(window_s=60, cluster_windows=10, sources=2)
    assert kc.add(decode(encode(batches[1])))
    assert not kc.add(decode(encode(batches[1])))  # redelivered: its groups are not doubled
    kc.add(decode(encode(route(600.0, 0, [], parts=4, suspicious=0.5)[0])))
    kc.watermark(0, 660.0)
    kc.watermark(1, 660.0)
    (wt,) = kc.close(part=1)
    assert [d["entity_id"] for d in wt["g"]] == ["swarm-a1"]


def _wt(w: float, part: int, groups: list[Any]) -> dict[str, Any]:
    return {"t": "wt", "w": w, "p": part, "keys": [], "susp": [], "g": groups}


def test_assembly_checks_groups_and_keeps_one_per_id() -> None:
    asm = CampaignAssembly(window_s=60, cluster_min_members=5, parts=2)
    small = _group("swarm-a1", ["a1", "a2"])
    big = _group("swarm-a1", ["a1", "a2", "a3"])
    bad = {**small.to_dict(), "detector": "account_baseline"}
    forged = {**small.to_dict(), "members": ["ok", 7]}
    # The same group from two partitions (a rebalance): the larger view wins either way.
    asm.add(orjson.loads(orjson.dumps(_wt(0.0, 1, [big.to_dict(), bad]))))
    asm.add(orjson.loads(orjson.dumps(_wt(0.0, 0, [small.to_dict(), forged]))))
    asm.watermark(0, 60.0)
    asm.watermark(1, 60.0)
    (out,) = asm.close()
    assert out.entity_id == "swarm-a1" and out.members == ["a1", "a2", "a3"]
    assert asm.rejected == 2


def test_the_hydra_is_one_alert_with_its_swarm_folded_in() -> None:
    """Through the pipeline (the swarm detector judges accounts younger than 30 days): the
    5-day-old hydra is also a swarm, and it is reported once, as its campaign."""
    h = hydra(n=120, hours=2)
    mon = Monitor()
    changes = []
    for ev in merged(h, benign(n=150, hours=2)):
        changes += mon.add(ev)
    changes += mon.flush()
    assert {c["detector"] for c in changes if c["entity_type"] == "cluster"} == {
        "cluster_campaign"}
    folded = [c for c in changes if "folded_groups" in c["evidence"]]
    assert folded and folded[-1]["evidence"]["folded_groups"][0]["group"].startswith("swarm-")


def _window(det: ClusterDetector, minute: int, accounts: dict[str, bool], *,
            key: tuple[str, str] = ("ip24", "88.75.127"), org: str | None = None,
            young: bool = False) -> list[Finding]:
    """One window in which ``accounts`` (id -> flagged by an account rule) send on ``key``."""
    for a, flagged in accounts.items():
        det.observe(a, [key], extraction=0.9, young=young, regular=False, requests=1,
                    output_tokens=2500, org=org or f"org-{a}", models=None,
                    ts=minute * 60.0, harvester=flagged)
    return det.end_window(minute * 60.0, minute * 60.0 + 60.0)


def test_the_accomplices_of_a_flagged_harvester_on_a_strong_key_are_one_campaign() -> None:
    det = ClusterDetector(window_s=60, cluster_windows=10)
    # Three harvest-like customers on one /24, far below the 6 members a key needs.
    assert _window(det, 0, {"c1": False, "c2": False, "c3": False}) == []
    out = _window(det, 1, {"c1": True, "c2": False, "c3": False})
    (camp,) = out
    assert camp.detector == "cluster_campaign" and camp.severity == "warning"
    assert set(camp.members or []) == {"c1", "c2", "c3"}


def test_two_harvesters_on_a_strong_key_are_one_campaign() -> None:
    # account_ramp marks sustained harvesters without an alert of their own: two on one
    # card or /24 are the campaign (mix's two-account slow ramp). Two accounts the rate rule
    # flagged are linked the same way (one operator, one campaign).
    det = ClusterDetector(window_s=60, cluster_windows=10)
    (camp,) = _window(det, 0, {"c1": True, "c2": True})
    assert camp.detector == "cluster_campaign"
    assert set(camp.members or []) == {"c1", "c2"}
    # One harvester alone on its key is no campaign.
    det = ClusterDetector(window_s=60, cluster_windows=10)
    assert _window(det, 0, {"c1": True}) == []


def test_no_accomplice_campaign_without_a_strong_key_or_traffic_share() -> None:
    # A weak key (an ASN) names no operator.
    det = ClusterDetector(window_s=60, cluster_windows=10)
    assert _window(det, 0, {"c1": True, "c2": False}, key=("asn", "64500")) == []
    # One old org's own accounts (a customer's evaluation keys).
    det = ClusterDetector(window_s=60, cluster_windows=10)
    assert _window(det, 0, {"c1": True, "c2": False, "c3": False}, org="org-lab") == []
    # The suspects are a small part of a busy /24 (an office or a NAT).
    det = ClusterDetector(window_s=60, cluster_windows=10)
    det.set_totals(0.0, [("ip24:88.75.127", 40)])
    assert _window(det, 0, {"c1": True, "c2": False, "c3": False}) == []


def test_the_harvester_mark_travels_on_the_wire_only_when_set() -> None:
    s = AccountSummary("a1", 600.0, [("pay", "card-1")], 0.8, True, False, 3, 900, None,
                       None, [])
    assert "h" not in s.to_wire()
    s.harvester = True
    assert AccountSummary.from_wire(orjson.loads(orjson.dumps(s.to_wire()))).harvester


def _harvester(name: str, per_hour: float, hours: float, seed: int) -> list[Event]:
    """An old customer account sending long single-turn answers cut at max_tokens from the
    operator's /24 (extraction blended into real accounts)."""
    rng = random.Random(seed)
    out, t = [], T0 + rng.uniform(0, 60)
    while t < T0 + hours * 3600:
        out.append(Event(name, t, "m", 300, 2400, event_id=f"{name}-{t:.3f}",
                         org_id=f"org-{name}", ip=f"88.75.127.{seed}", asn=63949,
                         user_agent="python-httpx/0.27.0", payment_fingerprint=f"pay-{name}",
                         account_created_ts=T0 - 400 * 86400.0, tier="pro", status=200,
                         stop_reason="max_tokens", turn=1,
                         prompt_fingerprint=f"{rng.getrandbits(64):016x}"))
        t += rng.expovariate(per_hour / 3600)
    return out


def test_the_pipeline_marks_harvesters_and_names_their_accomplices() -> None:
    loud = _harvester("x-loud", 240, 3, 1)
    quiet = _harvester("x-q1", 12, 3, 2) + _harvester("x-q2", 12, 3, 3)
    changes = []
    mon = Monitor()
    for ev in merged(loud, quiet, benign(n=200, hours=3)):
        changes += mon.add(ev)
    changes += mon.flush()
    by_detector: dict[str, set[str]] = {}
    for c in changes:
        if c["severity"] != "info":
            by_detector.setdefault(c["detector"], set()).update(
                c.get("members") or [c["entity_id"]])
    # The rate rule catches the loud one only; its /24-mates are named with it.
    assert by_detector["account_extraction"] == {"x-loud"}
    assert by_detector["cluster_campaign"] == {"x-loud", "x-q1", "x-q2"}


def test_template_founders_seen_in_earlier_windows_keep_their_org() -> None:
    """One customer's evaluation keys (old accounts of one org) sending one template, one
    key a minute: the template is founded at the fourth; the first three are founders from
    earlier windows. With their org dropped the key looked like many orgs and became a
    campaign (mix's one false campaign alert); with it, it is the org's own."""
    asm = CampaignAssembly(window_s=60, cluster_min_members=6)
    base = 0x5E6FEBE346099E40
    out: list[Finding] = []
    for i in range(9):
        summary = {"a": f"r{i}", "w": i * 60.0, "k": [["asn", 64500]], "x": 0.7, "y": False,
                   "r": False, "n": 1, "o": 1500, "g": "org-lab", "m": {"m": 1},
                   "f": [f"{base ^ (1 << i):016x}"]}
        asm.add({"t": "wt", "w": i * 60.0, "p": 0, "keys": [["asn:64500", i + 1]],
                 "susp": [summary]})
        asm.watermark(0, i * 60.0 + 60.0)
        out += asm.close()
    assert asm.clusters._agg, "the template key was never counted"
    assert [f for f in out if f.detector == "cluster_campaign"] == []
