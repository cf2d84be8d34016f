"""Campaign assembly keeps compact per-key state (issue 16): a key's members in two slots
until its second one, organisations derived from the members, one member tuple per account,
only the suspects' strong keys, as the aggregates' own tuples. It must hold what the
straightforward structures held, and a snapshot must still carry it whole."""

from __future__ import annotations

import random
from typing import Any

import orjson

from detectors.assembly import CampaignAssembly
from detectors.assembly_state import dump, load
from detectors.keyagg import KeyAgg, org_dominated
from detectors.keys import STRONG_KINDS


class _ReferenceAgg:
    """KeyAgg as it was before issue 16's compaction (a members dict, an orgs dict)."""

    def __init__(self) -> None:
        self.members: dict[str, tuple[bool, str | None]] = {}
        self.orgs: dict[str | None, int] = {}
        self.young = self.regular = self.susp_aw = self.requests = self.output_tokens = 0
        self.harvesters: set[str] | None = None

    def add(self, account_id: str, *, young: bool, regular: bool, org: str | None,
            requests: int, output_tokens: int, harvester: bool = False) -> None:
        self.susp_aw += 1
        self.requests += requests
        self.output_tokens += output_tokens
        if account_id not in self.members:
            self.members[account_id] = (young, org)
            self.young += young
            self.regular += regular
            self.orgs[org] = self.orgs.get(org, 0) + 1
        if harvester:
            self.harvesters = (self.harvesters or set()) | {account_id}


def test_key_aggregates_hold_what_the_reference_held() -> None:
    rng = random.Random(5)
    for _ in range(300):
        new, ref = KeyAgg(("pay", "c")), _ReferenceAgg()
        for _ in range(rng.choice([0, 1, 1, 2, 3, 8, 40])):
            kw: dict[str, Any] = {
                "young": rng.random() < 0.5, "regular": rng.random() < 0.3,
                "org": rng.choice([None, "o1", "o2", f"o{rng.randint(0, 9)}"]),
                "requests": rng.randint(0, 5), "output_tokens": rng.randint(0, 9000),
                "harvester": rng.random() < 0.05}
            a = f"a{rng.randint(0, 12)}"
            entry = (kw["young"], kw["org"]) if rng.random() < 0.5 else None
            new.add(a, entry=entry, **kw)
            ref.add(a, **kw)
            assert list(new.members.items()) == list(ref.members.items())
            assert list(new.orgs.items()) == list(ref.orgs.items())
            assert (new.young, new.regular, new.susp_aw, new.requests, new.output_tokens,
                    new.harvesters) == (ref.young, ref.regular, ref.susp_aw, ref.requests,
                                        ref.output_tokens, ref.harvesters)
            assert org_dominated(new) == org_dominated(ref)  # type: ignore[arg-type]


def _summaries(rng: random.Random, minute: int) -> list[dict[str, Any]]:
    """Suspects of one window: a few operators on shared cards and /24s, loners, orgs."""
    out = []
    for i in rng.sample(range(120), rng.randint(5, 40)):
        op = i % 7
        keys = [["pay", f"card-{op}" if rng.random() < 0.7 else f"c{i}"],
                ["ip24", f"10.{op}.{rng.randint(0, 1)}"], ["asn", str(op % 3)],
                ["org", f"org-{i % 11}"], ["ua", "sdk"]]
        out.append({"a": f"acct-{i}", "w": minute * 60.0, "k": keys,
                    "x": rng.choice([0.6, 0.8, 0.95]), "y": i % 3 != 0, "r": i % 2 == 0,
                    "n": rng.randint(1, 4), "o": rng.randint(500, 4000),
                    "g": rng.choice([None, f"org-{i % 5}"]), "m": {"m": 1},
                    "f": [f"{(0x0123456789ABCDEF ^ (op << 40)) + i % 3:016x}"]})
    return out


def test_suspects_strong_keys_are_the_aggregates_own_and_snapshots_keep_them() -> None:
    rng = random.Random(11)
    a, b = CampaignAssembly(window_s=60, cluster_min_members=4), None
    found_a: list[Any] = []
    found_b: list[Any] = []
    for minute in range(45):
        susp = _summaries(rng, minute)
        rec = {"t": "wt", "w": minute * 60.0, "p": 0,
               "keys": [[f"pay:card-{op}", 30] for op in range(7)], "susp": susp}
        for asm, found in ((a, found_a), (b, found_b)):
            if asm is None:
                continue
            asm.add(orjson.loads(orjson.dumps(rec)))
            asm.watermark(0, minute * 60.0 + 60)
            found.extend(f.to_dict() for f in asm.close())
        cd = a.clusters
        # Each suspect's kept keys: exactly its strong keys this cluster window, each the
        # one tuple its aggregate is filed under.
        want: dict[str, set[Any]] = {}
        for k, agg in cd._agg.items():
            assert agg.key is k
            if k[0] in STRONG_KINDS:
                for acct in agg.members:
                    want.setdefault(acct, set()).add(k)
        assert {acct: set(ks) for acct, ks in cd._acct_keys.items() if ks} == want
        for ks in cd._acct_keys.values():
            assert len(set(ks)) == len(ks)
            assert all(k is cd._agg[k].key for k in ks)
        if minute == 17:
            # A twin from a snapshot (through JSON) goes on finding what the original finds.
            snap = orjson.loads(orjson.dumps(dump(a)))
            b = load(CampaignAssembly(window_s=60, cluster_min_members=4), snap)
            again = orjson.loads(orjson.dumps(dump(b)))
            for d in (again, snap):
                d["cd"]["flag"].sort()  # a set: its order is the process's
            assert again == snap
            found_b = list(found_a)
    assert found_a and found_a == found_b
    assert any(f["detector"] == "cluster_campaign" for f in found_a)
