"""CohortDetector: young harvest-like accounts linked by shared keys across orgs are a
swarm; one org, chatty newcomers and a popular app's template are not."""

from __future__ import annotations

import copy
import pickle
import random

from detectors.cohort import CohortDetector, account_view, template_bands
from detectors.events import Event
from detectors.windows import AccountWindow

T0 = 100 * 86400.0


def _young(i: int, ts: float, *, org: str | None = None, keys: list[str] | None = None,
           requests: int = 4, harvest: int = 4, age: float = 0.3) -> dict:
    return {"account_id": f"s{i:03d}", "ts": ts, "age_days": age,
            "org": org if org is not None else f"org-{i}", "requests": requests,
            "harvest_like": harvest,
            "keys": keys if keys is not None else [f"pay:card-{i // 4}", "ip24:45.1.2"]}


def _run(det: CohortDetector, xs: list[dict]) -> list:
    found = []
    for x in xs:
        det.learn_one(x)
        found += det.end_window(x["ts"], x["ts"] + 60.0)
    return found


def test_swarm_across_orgs_is_one_group_with_a_stable_id() -> None:
    det = CohortDetector(min_members=5)
    xs = [_young(i, T0 + 300.0 * i) for i in range(40)]
    found = _run(det, xs)
    assert found, "a swarm of 40 linked harvest-like young accounts must be reported"
    first = found[0]
    # Reported once it had min_members, i.e. after the fifth account (25 minutes here).
    assert first.window_start == T0 + 300.0 * 4
    assert first.detector == "cohort_swarm" and first.entity_type == "cluster"
    assert {f.entity_id for f in found} == {"swarm-s000"}
    assert found[-1].member_count == 40 and set(found[-1].members) == {x["account_id"] for x in xs}
    assert found[-1].severity == "critical"  # >= critical_members
    assert found[-1].evidence["features"]["distinct_orgs"] == 40
    # Each listed member's org travels with the finding: the policy's org allowlist needs it.
    assert found[-1].member_orgs == {x["account_id"]: x["org"] for x in xs}


def test_one_org_is_not_a_swarm_even_when_linked_and_harvest_like() -> None:
    det = CohortDetector(min_members=5)
    assert _run(det, [_young(i, T0 + 60.0 * i, org="university") for i in range(200)]) == []
    # The switch: the same accounts in their own orgs are reported.
    det = CohortDetector(min_members=5)
    assert _run(det, [_young(i, T0 + 60.0 * i) for i in range(200)])


def test_chatty_newcomers_are_not_suspects() -> None:
    det = CohortDetector(min_members=5)
    # Multi-turn users: one long answer in five requests.
    xs = [_young(i, T0 + 60.0 * i, requests=5, harvest=1) for i in range(100)]
    assert _run(det, xs) == []
    # A single request never makes a suspect, however long its answer (1 / (1 + 1)).
    xs = [_young(i, T0 + 60.0 * i, requests=1, harvest=1) for i in range(100)]
    assert _run(det, xs) == []


def test_established_users_make_a_key_useless_for_linking() -> None:
    det = CohortDetector(min_members=5)
    found = []
    for i in range(30):
        ts = T0 + 60.0 * i
        x = _young(i, ts, keys=["tplb:0:abcdef"])
        det.learn_one(x)
        # Many established users send the same template (a popular app).
        for j in range(3):
            det.learn_one({"account_id": f"old{i}-{j}", "ts": ts, "age_days": 300.0,
                           "requests": 2, "harvest_like": 0, "keys": ["tplb:0:abcdef"]})
        found += det.end_window(ts, ts + 60.0)
    assert found == []


def test_weak_accounts_join_only_a_reported_group() -> None:
    det = CohortDetector(min_members=5)
    # Weak evidence (2 of 4 harvest-like) alone: nothing.
    assert _run(det, [_young(i, T0 + 60.0 * i, harvest=2) for i in range(20)]) == []
    det = CohortDetector(min_members=5)
    found = _run(det, [_young(i, T0 + 60.0 * i) for i in range(6)])
    found += _run(det, [_young(i, T0 + 600.0 + 60.0 * i, harvest=2) for i in range(6, 12)])
    assert found[-1].member_count == 12


def test_score_is_graded_and_zero_for_established_accounts() -> None:
    det = CohortDetector(min_members=5)
    x0 = _young(0, T0)
    assert det.score_one(x0) > 0.0  # scoring before any learning works
    lone = det.score_one(x0)
    for i in range(1, 5):
        det.learn_one(_young(i, T0 + 60.0 * i))
    assert det.score_one(x0) > lone
    assert det.score_one({**x0, "age_days": 400.0}) == 0.0
    assert det.score_one({**x0, "age_days": float("nan")}) == 0.0
    before = copy.deepcopy(x0)
    det.score_one(x0)
    assert x0 == before  # inputs are not mutated


def test_state_is_dropped_after_the_horizon() -> None:
    det = CohortDetector(min_members=5, horizon_s=3600.0, hold_s=600.0)
    _run(det, [_young(i, T0 + 30.0 * i) for i in range(50)])
    assert det.tracked["young"] == 50
    det.end_window(T0 + 10 * 3600.0, T0 + 10 * 3600.0 + 60.0)
    assert det.tracked == {"young": 0, "keys": 0, "groups": 0, "linked": 0}
    # And it works again afterwards, as a new group.
    found = _run(det, [_young(100 + i, T0 + 11 * 3600.0 + 60.0 * i) for i in range(6)])
    assert found and found[0].entity_id == "swarm-s100"


def test_same_input_same_findings_and_pickle_round_trip() -> None:
    rng = random.Random(4)
    xs = [_young(i, T0 + 60.0 * i, keys=[f"pay:c{rng.randint(0, 3)}"]) for i in range(30)]
    a, b = CohortDetector(), CohortDetector()
    fa = [(f.entity_id, f.member_count) for f in _run(a, xs)]
    fb = [(f.entity_id, f.member_count) for f in _run(b, xs)]
    assert fa == fb and fa
    c = pickle.loads(pickle.dumps(a))
    x = _young(99, T0 + 3600.0, keys=["pay:c1"])
    assert c.score_one(x) == a.score_one(x)


def test_account_view_keys_and_template_bands() -> None:
    acc = AccountWindow()
    for k in range(3):
        acc.add(Event("a1", T0 + k, "m", 100, 2048, stop_reason="max_tokens", turn=1,
                      ip="45.1.2.3", asn=16509, payment_fingerprint="pm_1", org_id="org-a",
                      account_created_ts=T0 - 7200.0,
                      prompt_fingerprint=f"{0x0123456789abcdef ^ (1 << k):016x}"))
    x = account_view("a1", acc, T0)
    assert x["harvest_like"] == 3 and x["requests"] == 3
    assert abs(x["age_days"] - (7202.0 / 86400.0)) < 1e-9
    assert "pay:pm_1" in x["keys"] and "ip24:45.1.2" in x["keys"]
    assert any(k.startswith("cohort:") for k in x["keys"])
    assert not any(k.startswith(("asn:", "org:")) for k in x["keys"])
    # Bits 0-2 flipped: the two upper bands are the template's, exactly.
    bands = template_bands("0123456789abcdef")
    assert bands[0] in x["keys"] and bands[1] in x["keys"]
    assert template_bands("not-hex") == []


_HASH_SEED_RUN = """
import json
from detectors.cohort import CohortDetector
from tests.detectors.test_cohort import T0, _young, _run
det = CohortDetector(min_members=5)
# Each account brings several link keys: which key a union credits follows their order.
xs = [_young(i, T0 + 60.0 * i, keys=[f"pay:card-{i // 3}", f"ip24:45.1.{i // 5}",
                                      f"cohort:{i // 7}:1", "tplb:0:abc"]) for i in range(40)]
print(json.dumps([f.evidence["signals"] for f in _run(det, xs)]))
"""


def test_evidence_does_not_depend_on_the_hash_seed() -> None:
    """Replay and the worker must report the same evidence; a set of key strings iterates in
    an order that changes with PYTHONHASHSEED."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    outs = set()
    for seed in ("1", "2", "3", "4"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        outs.add(subprocess.run([sys.executable, "-c", _HASH_SEED_RUN], env=env, cwd=root,
                                check=True, capture_output=True, text=True).stdout)
    assert len(outs) == 1


def test_a_slow_group_of_older_young_accounts_needs_the_wider_young_cut() -> None:
    """Five 10-day-old harvest-like accounts of five orgs on one card, a request every 20
    minutes each: a 30-day cut (detection.young_days) finds them within hours, the 2-day
    throwaway cut never looks at them."""
    xs = [_young(i % 5, T0 + 240.0 * i, age=10.0, requests=1, harvest=1,
                 keys=["pay:card-x", "ip24:98.55.26"]) for i in range(60)]
    wide = _run(CohortDetector(young_days=30.0), xs)
    assert wide and {f.entity_id for f in wide} == {"swarm-s000"}
    assert wide[0].window_start - T0 <= 3 * 3600.0
    assert set(wide[-1].members) == {f"s{i:03d}" for i in range(5)}
    assert not _run(CohortDetector(), xs)


def test_link_keys_per_account_are_capped_and_later_windows_still_link() -> None:
    det = CohortDetector(min_members=3, max_account_keys=8)
    # One long-lived suspect with a new prompt template (two bands) in every window.
    for w in range(40):
        det.learn_one(_young(0, T0 + 60.0 * w,
                             keys=["pay:card-a", f"tplb:0:{w:06x}", f"tplb:1:{w:06x}"]))
    assert len(det._young["s000"].keys) == 8
    # Two newcomers share a template the suspect sent long after its cap was reached.
    found = []
    for i in (1, 2):
        det.learn_one(_young(i, T0 + 3000.0 + i, keys=["tplb:0:000027", "tplb:1:000027"]))
        found += det.end_window(T0 + 3000.0, T0 + 3060.0)
    assert found and set(found[-1].members) == {"s000", "s001", "s002"}


def _bands(fp: int) -> list[str]:
    return template_bands(f"{fp:016x}")


def test_one_shared_prompt_band_is_no_link_a_template_is() -> None:
    """Two unrelated 10-day-old harvesters whose prompts meet on one band once (a 21-bit
    chance match among many prompts) are not linked, two day-old throwaways are; older
    accounts of one template, sharing its bands, are linked too."""
    rng = random.Random(7)
    det = CohortDetector(young_days=30.0, min_members=2)
    # Each sends random prompts for 50 windows; window 10 of b repeats one band of a's.
    a_fps = [rng.getrandbits(64) for _ in range(50)]
    b_fps = [rng.getrandbits(64) for _ in range(50)]
    b_fps[10] = (b_fps[10] & ~((1 << 21) - 1 << 43)) | (a_fps[3] & ((1 << 21) - 1 << 43))
    assert len(set(_bands(a_fps[3])) & set(_bands(b_fps[10]))) == 1
    found = []
    for w in range(50):
        for i, fps in ((0, a_fps), (1, b_fps)):
            det.learn_one(_young(i, T0 + 60.0 * w, age=10.0, keys=_bands(fps[w])))
        found += det.end_window(T0 + 60.0 * w, T0 + 60.0 * (w + 1))
    assert found == []
    assert det._find("s000") != det._find("s001")
    # The same two as throwaways (a day old, a handful of prompts each): one band links.
    det = CohortDetector(young_days=30.0, min_members=2)
    for i, fp in ((0, a_fps[3]), (1, b_fps[10])):
        det.learn_one(_young(i, T0 + i, age=1.0, keys=_bands(fp)))
    assert det._find("s000") == det._find("s001")

    # A templated pair: prompts of one template, a few bits flipped each, in their own
    # windows; they share whole bands on most prompts and are linked.
    det = CohortDetector(young_days=30.0, min_members=2)
    tmpl = rng.getrandbits(64)
    found = []
    for w in range(6):
        for i in (2, 3):
            fp = tmpl ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64))
            det.learn_one(_young(i, T0 + 60.0 * w + i, age=10.0, keys=_bands(fp)))
        found += det.end_window(T0 + 60.0 * w, T0 + 60.0 * (w + 1))
    assert found and set(found[-1].members) == {"s002", "s003"}


def test_link_labels_is_the_kind_before_the_first_colon() -> None:
    """link_labels (a prefix test) keeps what splitting at the first ":" and looking the
    kind up in LINK_KINDS keeps, on edge cases and random labels."""
    import random

    from detectors.cohort import LINK_KINDS, link_labels

    edge = ["", ":", "pay", "pay:", "pay::", "payx:1", "xpay:1", "PAY:c", "tplb", "tplb:",
            "cohort:1:-", "cohortx", "ip24:10.0.0", "ip24", "ip2:4", "asn:1", "ua:pay:x",
            "org:ip24:x", "sys:tplb:0", "p:ay"]
    rng = random.Random(7)
    parts = ["pay", "ip24", "cohort", "tplb", "asn", "ua", "", "x", "pa", "tpl"]
    rand = [":".join(rng.choice(parts) for _ in range(rng.randrange(1, 4)))
            for _ in range(2000)]
    for labels in (edge, rand):
        assert link_labels(labels) == [k for k in labels if k.split(":", 1)[0] in LINK_KINDS]


def test_template_bands_text_is_the_reference_text() -> None:
    """The bands' printf formatting gives the reference's f-string text on every value."""
    import random

    from tests.detectors import cohort_reference

    rng = random.Random(3)
    fps = ["0" * 16, "f" * 16, "F" * 16, "1", "", "zz", "0x1f", " 7f ", "-5", "1_0",
           *(f"{rng.getrandbits(64):016x}" for _ in range(3000)),
           *(f"{rng.getrandbits(rng.randrange(1, 80)):x}" for _ in range(500))]
    for fp in fps:
        assert template_bands(fp) == cohort_reference.template_bands(fp), fp


def test_established_accounts_mark_the_same_keys_as_the_reference() -> None:
    """Established accounts look their labels up unfiltered (every tracked key is a link
    label): the old-account samples per key and the findings stay the reference's, with
    labels that only look like link kinds among them."""
    import random

    from tests.detectors.cohort_reference import CohortDetector as ReferenceCohort
    from tests.detectors.test_compact_state import _cohort_stream

    kw = {"young_days": 30.0, "min_members": 4, "horizon_s": 6 * 3600.0, "hold_s": 3600.0,
          "max_key_members": 12, "max_account_keys": 5}
    rng = random.Random(9)
    new, ref = CohortDetector(**kw), ReferenceCohort(**kw)
    n_old = 0
    for kind, arg in _cohort_stream(4):
        if kind == "learn":
            x = dict(arg)  # type: ignore[call-overload]
            if x["age_days"] >= 30.0:
                n_old += 1
                x["keys"] = [*x["keys"], "pay", "payx:card-1", "ua:pay:card-1",
                             f"ip24x:10.{rng.randint(0, 5)}.0", "tplb"]
            new.learn_one(x)
            ref.learn_one(x)
        else:
            assert new.end_window(arg, arg + 600.0) == ref.end_window(arg, arg + 600.0)
            # (None here while a key has no old account, an empty set in the reference)
            assert ({k: s.old or set() for k, s in new._keys.items()}
                    == {k: s.old or set() for k, s in ref._keys.items()})
    assert n_old > 100
    assert any(s.old for s in new._keys.values())
