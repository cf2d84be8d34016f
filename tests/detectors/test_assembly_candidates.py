"""Campaign assembly keeps of a template candidate only what a founder found windows later
joins with (:class:`detectors.assembly.Candidate`), not its whole summary (issue 16: ~2 KB
per candidate). Snapshots keep their format: a candidate is written as a summary without
the fields not kept, and snapshots with whole summaries load to the same candidates."""

from __future__ import annotations

import orjson

from detectors.assembly import CampaignAssembly, Candidate
from detectors.assembly_state import dump, load
from detectors.summary import AccountSummary


def _summary(i: int, fp: str) -> dict:
    return {"a": f"acct-{i}", "w": 0.0, "k": [["pay", f"card-{i}"], ["asn", 7]], "x": 0.75,
            "y": i % 2 == 0, "r": False, "n": 3, "o": 900, "g": f"org-{i}" if i % 3 else None,
            "m": {"claude-large": 3}, "f": [fp]}


def _asm() -> CampaignAssembly:
    asm = CampaignAssembly(window_s=60, cluster_min_members=5)
    susp = [_summary(i, f"{i:016x}") for i in range(8)]
    asm.add({"t": "wt", "w": 0.0, "p": 0, "keys": [], "susp": susp})
    asm.watermark(0, 60.0)
    asm.close()
    return asm


def test_candidates_keep_the_fields_a_founder_joins_with() -> None:
    asm = _asm()
    assert len(asm._candidates) == 8
    c = asm._candidates["acct-3"]
    full = AccountSummary.from_wire(_summary(3, f"{3:016x}"))
    assert c == Candidate.of(full)
    assert (c.extraction, c.young, c.regular, c.org) == (0.75, False, False, None)


def test_snapshot_round_trip_and_old_snapshots_with_whole_summaries() -> None:
    asm = _asm()
    snap = orjson.loads(orjson.dumps(dump(asm)))
    assert load(CampaignAssembly(window_s=60, cluster_min_members=5), snap)._candidates == \
        asm._candidates
    # Written before Candidate: the whole summaries.
    old = orjson.loads(orjson.dumps(snap))
    old["asm"]["cand"] = [_summary(i, f"{i:016x}") for i in range(8)]
    twin = load(CampaignAssembly(window_s=60, cluster_min_members=5), old)
    assert twin._candidates == asm._candidates
    assert dump(twin) == snap
