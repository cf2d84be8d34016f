"""Generation: determinism, schema, and labels that match the traffic they describe."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from detectors.events import event_from_dict
from simulator.generate import generate
from simulator.scenario import scenario_from_dict
from streams.cli import main

TINY = Path(__file__).parents[2] / "scenarios" / "tiny.toml"
LABEL_WORDS = (b"campaign", b"label", b"benign", b"population", b"hydra", b"trap")


def _simulate(
    tmp_path: Path, seed: int, scenario: Path = TINY, name: str = "a"
) -> tuple[Path, Path]:
    ev, lab = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.labels.jsonl"
    rc = main(["simulate", str(scenario), "--seed", str(seed), "--out", str(ev),
               "--labels", str(lab)])
    assert rc == 0
    return ev, lab


def _load(ev: Path, lab: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events = [orjson.loads(x) for x in ev.read_bytes().splitlines()]
    labels = [orjson.loads(x) for x in lab.read_bytes().splitlines()]
    return events, labels


def _hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, capsys) -> None:
    a = _simulate(tmp_path, 7, name="a")
    b = _simulate(tmp_path, 7, name="b")
    c = _simulate(tmp_path, 8, name="c")
    assert a[0].read_bytes() == b[0].read_bytes()
    assert a[1].read_bytes() == b[1].read_bytes()
    assert a[0].read_bytes() != c[0].read_bytes()
    err = capsys.readouterr().err
    assert "events/s" in err and "per CPU-second" in err


def test_events_are_valid_sorted_and_carry_no_labels(tmp_path: Path) -> None:
    ev, lab = _simulate(tmp_path, 1)
    raw = ev.read_bytes()
    events, labels = _load(ev, lab)
    assert len(events) > 1000
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    for e in events:
        parsed = event_from_dict(e, now=e["ts"])
        assert parsed.to_dict() == e  # every field is a DESIGN.md field, with the right type
    for word in LABEL_WORDS:
        assert word not in raw
    assert len({e["event_id"] for e in events}) == len(events)
    scen = next(r for r in labels if r["type"] == "scenario")
    assert scen["events"] == len(events)
    assert all(scen["start_ts"] <= t < scen["end_ts"] for t in ts)
    ids = {r["account_id"] for r in labels if r["type"] == "account"}
    assert {e["account_id"] for e in events} <= ids


def test_hydra_accounts_have_the_campaign_properties(tmp_path: Path) -> None:
    events, labels = _load(*_simulate(tmp_path, 3))
    camp = next(r for r in labels if r["type"] == "campaign" and r["kind"] == "hydra")
    members = {r["account_id"] for r in labels
               if r["type"] == "account" and r["campaign_id"] == camp["campaign_id"]}
    assert len(members) == camp["accounts"] == 120
    mine = [e for e in events if e["account_id"] in members]
    assert len(mine) == camp["requests"]
    assert min(e["ts"] for e in mine) >= camp["start_ts"]
    ok = [e for e in mine if e["status"] == 200]
    assert all(e["turn"] == 1 and "system_prompt_fingerprint" not in e for e in mine)
    assert np.median([e["output_tokens"] for e in ok]) > 1000
    assert 0.2 < np.mean([e["stop_reason"] == "max_tokens" for e in ok]) < 0.6
    # Templated prompts: near-duplicates of one another, but rarely identical.
    fps = [e["prompt_fingerprint"] for e in mine]
    assert len(set(fps)) > 0.9 * len(fps)
    near = [min(_hamming(f, g) for g in fps[:200] if g != f) for f in fps[:50]]
    assert np.median(near) <= 12
    # Shared infrastructure and burst-created young accounts.
    assert len({e["payment_fingerprint"] for e in mine}) <= math.ceil(120 / 50)
    assert len({e["asn"] for e in mine}) <= 3
    assert len({e["user_agent"] for e in mine}) <= 2
    created = sorted({e["account_created_ts"] for e in mine})
    assert all(camp["start_ts"] - 14 * 86400 <= c < camp["start_ts"] for c in created)
    # Scripted timing: about one request an hour per account, with little variation.
    by_acct = defaultdict(list)
    for e in mine:
        by_acct[e["account_id"]].append(e["ts"])
    gaps = np.concatenate([np.diff(v) for v in by_acct.values() if len(v) > 1])
    assert 3300 < np.median(gaps) < 3900
    assert gaps.std() / gaps.mean() < 0.2


def test_benign_population_is_varied(tmp_path: Path) -> None:
    events, labels = _load(*_simulate(tmp_path, 3))
    benign = {r["account_id"] for r in labels if r["type"] == "account" and r["label"] == "benign"}
    mine = [e for e in events if e["account_id"] in benign]
    per = defaultdict(int)
    for e in mine:
        per[e["account_id"]] += 1
    counts = sorted(per.values(), reverse=True)
    # Heavy tail: the busiest tenth of accounts sends most of the traffic.
    assert sum(counts[: len(counts) // 10]) > 0.5 * sum(counts)
    assert max(e.get("turn", 1) for e in mine) >= 3
    assert {429} <= {e["status"] for e in mine}
    ages = [(e["ts"] - e["account_created_ts"]) / 86400 for e in mine]
    assert min(ages) < 30 and max(ages) > 365
    assert len({e["asn"] for e in mine}) >= 10 and len({e["user_agent"] for e in mine}) >= 5
    assert len({e["tier"] for e in mine}) == 3


def _trap(kind: str, **kw: Any) -> dict[str, Any]:
    return {"scenario": {"name": kind, "start": "2026-01-05T00:00:00Z", "duration_h": 30},
            "benign": {"accounts": 20}, "traps": [{"kind": kind, **kw}]}


def _by_population(data: dict[str, Any]) -> dict[str, list[tuple[int, float, int]]]:
    sim = generate(scenario_from_dict(data), seed=5)
    out = defaultdict(list)
    ev = sim.events
    for a, t, s in zip(ev.acct.tolist(), ev.ts.tolist(), ev.sysfp.tolist(), strict=True):
        out[sim.tables.population[a]].append((a, t, s))
    return out


def test_popular_tool_shares_one_system_prompt_across_many_accounts() -> None:
    pop = _by_population(_trap("popular_tool", accounts=300))["trap:popular-tool"]
    assert len({a for a, _, _ in pop}) > 150
    assert len({s for _, _, s in pop}) == 1


def test_enterprise_batch_fires_50x_for_an_hour_at_night() -> None:
    pop = _by_population(_trap("enterprise_batch", requests_per_hour=20, batch_hour_utc=2))
    t0 = 1767571200  # 2026-01-05T00:00:00Z
    hours = np.bincount([int((t - t0) // 3600) for _, t, _ in pop["trap:enterprise-batch"]],
                        minlength=30)
    # Both nights, 02:00-03:00 UTC.
    assert hours[2] > 30 * np.median(hours) and hours[26] > 30 * np.median(hours)


@pytest.mark.parametrize("kind", ["research_org", "reseller"])
def test_other_traps_are_labelled_benign(kind: str) -> None:
    sim = generate(scenario_from_dict(_trap(kind)), seed=2)
    assert sim.campaigns == []
    assert all(c is None for c in sim.tables.campaign)
    assert any(p.startswith("trap:") for p in sim.tables.population)


def test_model_pivot_moves_to_the_new_model_after_release() -> None:
    s = scenario_from_dict({
        "scenario": {"name": "p", "start": "2026-01-05T00:00:00Z", "duration_h": 10, "models": [
            {"name": "old"}, {"name": "new", "released_h": 5}]},
        "benign": {"accounts": 50},
        "campaigns": [{"kind": "model_pivot", "id": "p", "accounts": 40, "to_model": "new",
                       "pivot_h": 5, "pivot_within_h": 1}],
    })
    sim = generate(s, seed=1)
    ev = sim.events
    is_camp = np.array([c is not None for c in sim.tables.campaign])[ev.acct]
    release = sim.t0 + 5 * 3600
    assert not (ev.model[ev.ts < release] == 1).any()  # nobody uses it before it exists
    late = is_camp & (ev.ts > release + 3600)
    assert (ev.model[late] == 1).mean() > 0.95


def test_blend_relabels_existing_customers() -> None:
    s = scenario_from_dict({
        "scenario": {"name": "b", "start": "2026-01-05T00:00:00Z", "duration_h": 12},
        "benign": {"accounts": 200, "sessions_per_day": 5},
        "campaigns": [{"kind": "blend", "id": "b", "accounts": 2, "start_h": 6}],
    })
    sim = generate(s, seed=4)
    hosts = [i for i, c in enumerate(sim.tables.campaign) if c == "b"]
    assert len(hosts) == 2
    ev = sim.events
    for h in hosts:
        own = ev.ts[(ev.acct == h) & (ev.ts < sim.t0 + 6 * 3600)]
        assert len(own) > 0  # a real customer with history before the campaign


def test_throughput_is_printed(tmp_path: Path, capsys) -> None:
    """Not a timed assertion: prints the simulator's rate for the record."""
    _simulate(tmp_path, 1)
    err = capsys.readouterr().err
    print(err.strip().splitlines()[-1])
    assert "events/s" in err


def test_cli_rejects_bad_scenarios_and_flags(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\nstart = 2026-01-05T00:00:00Z\nduration_h = 0\n')
    assert main(["simulate", str(bad), "--out", str(tmp_path / "e.jsonl")]) == 2
    assert "scenario.duration_h: Input should be greater than 0 (got 0)" in capsys.readouterr().err
    assert main(["simulate", str(TINY)]) == 2
    assert "--out FILE or --broker URL" in capsys.readouterr().err
    assert main(["simulate", str(TINY), "--out", str(tmp_path / "e"), "--speed", "2"]) == 2
    assert "need --broker" in capsys.readouterr().err


def test_launch_day_multiplies_one_tier_and_moves_it_to_the_new_model() -> None:
    s = scenario_from_dict({
        "scenario": {"name": "l", "start": "2026-01-05T12:00:00Z", "duration_h": 6, "models": [
            {"name": "old"}, {"name": "new", "released_h": 3}]},
        "benign": {"accounts": 400, "sessions_per_day": 10},
        "traps": [{"kind": "launch_day", "tier": "pro", "start_h": 3, "duration_h": 2,
                   "multiplier": 5, "new_model": "new", "new_model_share": 0.5}],
    })
    sim = generate(s, seed=3)
    ev = sim.events
    hour = ((ev.ts - sim.t0) // 3600).astype(int)
    pro = np.array(sim.tables.tier)[ev.acct] == "pro"
    assert (pro & (hour == 3)).sum() > 3 * (pro & (hour == 2)).sum()
    assert (~pro & (hour == 3)).sum() < 2 * (~pro & (hour == 2)).sum()
    assert not (ev.model[hour < 3] == 1).any()
    assert 0.35 < (ev.model[pro & (hour == 3)] == 1).mean() < 0.7
