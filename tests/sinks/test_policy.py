"""Policy logic without I/O: allowlists, the agreement gate, the breaker, idempotency."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.sinks.errors import PolicyError
from streams.sinks.policy import Policy, PolicyEngine, Rule, effective_severity, load_policy
from tests.sinks.helpers import change

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _outcomes(verdict):
    return [(d.account_id, d.action, d.decision) for d in verdict.decisions]


def test_allowlisted_accounts_orgs_and_clusters_are_never_actioned():
    pol = Policy(
        dry_run=False,
        allowlist={"accounts": ["vip"], "orgs": ["org-internal"], "clusters": ["tmpl:ide"]},
    )
    eng = PolicyEngine(pol)
    two = lambda a: 2  # noqa: E731
    v = eng.decide(change("vip", severity="critical"), agreeing=two)
    assert _outcomes(v) == [("vip", "suspend", "skipped")]
    assert v.decisions[0].reason == "allowlisted account"
    v = eng.decide(change("emp", severity="critical", org_id="org-internal"), agreeing=two)
    assert v.decisions[0].reason == "allowlisted org org-internal"
    cl = change("tmpl:x", entity_type="cluster", severity="critical",
                members=["vip", "m1", "m2"], member_orgs={"m2": "org-internal"})
    assert _outcomes(eng.decide(cl, agreeing=two)) == [
        ("vip", "suspend", "skipped"), ("m1", "suspend", "execute"),
        ("m2", "suspend", "skipped"),
    ]
    ide = change("tmpl:ide", entity_type="cluster", severity="critical", members=["m9"])
    v = eng.decide(ide, agreeing=two)
    assert _outcomes(v) == [(None, "suspend", "skipped")]
    assert v.decisions[0].reason == "allowlisted cluster"


@pytest.mark.parametrize(
    ("own", "agree", "expected"),
    [("critical", 2, "suspend"), ("critical", 1, "flag"), ("warning", 3, "flag")],
)
def test_suspension_needs_critical_and_two_independent_detectors(own, agree, expected):
    eng = PolicyEngine(Policy(dry_run=False))
    sev = effective_severity(own, agree)
    v = eng.decide(change("a1", severity=own), agreeing=lambda a: agree, severity=sev)
    assert [d.action for d in v.decisions] == [expected]
    if expected == "flag":
        assert "instead" in v.decisions[0].reason


def test_fallback_none_skips():
    eng = PolicyEngine(Policy(dry_run=False, fallback_action="none"))
    v = eng.decide(change("a1", severity="critical"), agreeing=lambda a: 1)
    assert _outcomes(v) == [("a1", "suspend", "skipped")]


def test_breaker_caps_actions_and_trips_once_per_interval():
    clock = Clock()
    pol = Policy(dry_run=False, breaker={"max_actions": 3, "interval_s": 600})
    eng = PolicyEngine(pol, clock=clock)
    two = lambda a: 2  # noqa: E731
    verdicts = [eng.decide(change(f"a{i}", severity="critical"), agreeing=two)
                for i in range(6)]
    assert [v.decisions[0].decision for v in verdicts] == ["execute"] * 3 + ["skipped"] * 3
    assert [v.budget_exceeded for v in verdicts] == [False] * 3 + [True, False, False]
    assert verdicts[4].decisions[0].reason.startswith("action budget exceeded")
    # Flags are not budgeted: marking for review still works while the breaker is open.
    v = eng.decide(change("w1", severity="warning"), agreeing=two)
    assert _outcomes(v) == [("w1", "flag", "execute")]
    clock.t += 300
    assert eng.breaker.is_open(clock.t)
    clock.t += 301  # the interval after the trip has passed: budget again
    v = eng.decide(change("a9", severity="critical"), agreeing=two)
    assert v.decisions[0].decision == "execute" and not eng.breaker.is_open(clock.t)


@pytest.mark.parametrize("dry_run", [True, False])
def test_dry_run_records_the_same_decision_without_executing(dry_run):
    eng = PolicyEngine(Policy(dry_run=dry_run))
    v = eng.decide(change("a1", severity="critical"), agreeing=lambda a: 2)
    assert _outcomes(v) == [("a1", "suspend", "dry_run" if dry_run else "execute")]
    assert v.decisions[0].idempotency_key == "account-a1-account_baseline:a1:suspend"


def test_idempotency_per_alert_account_and_action():
    eng = PolicyEngine(Policy(dry_run=False))
    c = change("a1", severity="critical")
    assert _outcomes(eng.decide(c, agreeing=lambda a: 1)) == [("a1", "flag", "execute")]
    # Same alert updated, still one detector: already flagged.
    v = eng.decide({**c, "state": "updated"}, agreeing=lambda a: 1)
    assert _outcomes(v) == [(None, "suspend", "skipped")]
    assert v.decisions[0].reason.startswith("already decided")
    # A second detector now agrees: escalation to suspend is a new key, done once.
    assert _outcomes(eng.decide(c, agreeing=lambda a: 2)) == [("a1", "suspend", "execute")]
    assert eng.decide(c, agreeing=lambda a: 2).decisions[0].decision == "skipped"
    # Resolutions decide nothing.
    assert eng.decide({**c, "state": "resolved"}, agreeing=lambda a: 2).decisions == []


def test_big_cluster_waits_for_approval_once():
    eng = PolicyEngine(Policy(approval_above_members=5, allowlist={"accounts": ["m0"]}))
    cl = change("tmpl:x", entity_type="cluster", severity="critical",
                members=[f"m{i}" for i in range(8)])
    v = eng.decide(cl, agreeing=lambda a: 2)
    assert v.pending_members == [f"m{i}" for i in range(1, 8)]
    assert [d.decision for d in v.decisions] == ["skipped", "pending_approval"]
    grown = {**cl, "state": "updated", "members": cl["members"] + ["m8"], "member_count": 9}
    again = eng.decide(grown, agreeing=lambda a: 2)
    assert again.pending_members == [f"m{i}" for i in range(1, 9)]  # refreshed
    assert [d.reason for d in again.decisions] == ["already waiting for approval"]
    approved = eng.decide_approved(cl["alert_id"], cl, v.pending_members)
    assert {d.decision for d in approved} == {"dry_run"} and len(approved) == 7


def test_rules_match_in_order_and_none_is_recorded():
    pol = Policy(rules=(Rule(detectors=("noisy",), action="none"),
                        Rule(min_score=10, action="throttle")))
    eng = PolicyEngine(pol)
    v = eng.decide(change("a", detector="noisy", score=50), agreeing=lambda a: 1)
    assert _outcomes(v) == [(None, "none", "skipped")] and v.decisions[0].rule == 0
    assert _outcomes(eng.decide(change("a", score=12), agreeing=lambda a: 1)) == [
        ("a", "throttle", "dry_run")
    ]
    v = eng.decide(change("b", score=8), agreeing=lambda a: 1)
    assert v.decisions[0].reason == "no rule matches"


def test_policy_files(tmp_path):
    example = load_policy(ROOT / "deploy" / "policy.example.toml")
    assert example.dry_run is True and example.min_agreeing_detectors == 2
    assert load_policy(None) == Policy()
    # docs/delivery.md: the built-in policy is the example without its allowlist entries.
    assert example.model_copy(update={"allowlist": Policy().allowlist}) == Policy()
    bad = tmp_path / "bad.toml"
    bad.write_text('dry_run = false\n[[rules]]\naction = "nuke"\n')
    with pytest.raises(PolicyError, match=r"rules\.0\.action"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "missing.toml")


# -- the org allowlist on alerts from the real detection path (issue 11, item 3) --------------


def _campaign_changes() -> list[dict]:
    """Alert changes of a 200-account campaign (each account its own org) amid benign traffic,
    from the offline Monitor: the code path the worker runs."""
    from detectors.pipeline import Monitor
    from tests.detectors.synth import benign, hydra, merged

    mon = Monitor()
    out = []
    for ev in merged(hydra(n=200, hours=3), benign(n=300, hours=3)):
        out += mon.add(ev)
    return out + mon.flush()


def _org_policy(orgs: list[str]) -> str:
    listed = ", ".join(f'"{o}"' for o in orgs)
    return f"dry_run = true\n[allowlist]\norgs = [{listed}]\n"


def test_campaign_whose_member_orgs_are_all_allowlisted_acts_on_no_account(tmp_path):
    import asyncio

    from tests.sinks.helpers import Harness

    changes = _campaign_changes()
    clusters = [c for c in changes if c["entity_type"] == "cluster" and c["state"] != "resolved"]
    assert clusters, "the synthetic campaign was not detected"
    members = {m for c in clusters for m in c["members"]}
    # The orgs travel from the events through findings onto the alert changes.
    assert {c["member_orgs"][m] for c in clusters for m in c["members"]} == {
        f"org-{m}" for m in members
    }
    orgs = sorted(f"org-h{i}" for i in range(200))

    for sub in ("all", "one"):
        (tmp_path / sub).mkdir()
    h = Harness(tmp_path / "all", policy=_org_policy(orgs))
    asyncio.run(h.run(changes))
    acted = [r for r in h.audit if r["decision"] in ("dry_run", "execute", "pending_approval")]
    assert acted == []
    skipped = [r for r in h.audit if r["decision"] == "skipped" and r["account_id"]]
    assert {r["account_id"] for r in skipped} == members
    assert all(r["reason"] == f"allowlisted org org-{r['account_id']}" for r in skipped)

    # Control: one org left off the list, and that org's account (only) is acted on.
    spared = sorted(members)[0]
    h2 = Harness(tmp_path / "one", policy=_org_policy([o for o in orgs if o != f"org-{spared}"]))
    asyncio.run(h2.run(changes))
    acted2 = [r for r in h2.audit if r["decision"] in ("dry_run", "pending_approval")]
    assert acted2 and {r["account_id"] for r in acted2 if r["account_id"]} <= {spared}


LOOK_ALIKES = [
    "Org-Internal",  # case
    "ORG-INTERNAL",
    "org-internal ",  # trailing space
    " org-internal",
    "org-internal\n",
    "org-internal\u200b",  # zero-width space
    "\u043erg-internal",  # Cyrillic o
    "\uff4frg-internal",  # fullwidth o (NFKC would fold it to "org-internal")
    "org\u2010internal",  # Unicode hyphen
    "org-internal\x00",
]


@pytest.mark.parametrize("org", LOOK_ALIKES)
def test_look_alike_org_is_not_allowlisted(org):
    eng = PolicyEngine(Policy(dry_run=False, allowlist={"orgs": ["org-internal"]}))
    v = eng.decide(change("a1", severity="critical", org_id=org), agreeing=lambda a: 2)
    assert _outcomes(v) == [("a1", "suspend", "execute")]
    cl = change("tmpl:x", entity_type="cluster", severity="critical", members=["m1"],
                member_orgs={"m1": org}, alert_id="c-look-alike")
    assert _outcomes(eng.decide(cl, agreeing=lambda a: 2)) == [("m1", "suspend", "execute")]


@pytest.mark.parametrize(
    "extra",
    [
        {"org_id": ["org-internal"]},  # str(["..."]) must not be what matches
        {"org_id": 0, "evidence": "not a mapping"},
        {"entity_type": "cluster", "members": ["a1"], "member_orgs": ["org-internal"]},
        {"entity_type": "cluster", "members": ["a1"], "member_orgs": {"a1": 7}},
    ],
)
def test_malformed_org_fields_neither_match_nor_crash(extra):
    eng = PolicyEngine(Policy(dry_run=False, allowlist={"orgs": ["org-internal", "0", "7"]}))
    v = eng.decide(change("a1", severity="critical", **extra), agreeing=lambda a: 2)
    assert [d.decision for d in v.decisions if d.account_id == "a1"] == ["execute"]


@pytest.mark.parametrize("entry", [" org-internal", "org-internal\t", "", "org\ninternal"])
def test_allowlist_entry_that_could_never_match_is_rejected_at_load(tmp_path, entry):
    p = tmp_path / "p.toml"
    p.write_text(f"[allowlist]\norgs = [{entry!r}]\n".replace("'", '"'))
    with pytest.raises(PolicyError, match="allowlist"):
        load_policy(p)
