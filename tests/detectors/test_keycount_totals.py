"""The per-key stage keeps its running totals per 64-bit label hash in sorted arrays
(:class:`detectors.keycount.Totals`) instead of a dict per label string (issue 16: the
dict was 546 of the in-process cluster stages' 804 B per account). Its window totals must
be exactly those of the dict-based stage: compared here with a verbatim copy of it on
random streams (several windows, cluster-window resets, several sources, chunks,
redeliveries, late batches)."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import pytest

from detectors.keycount import KeyCounter, Totals, label_hashes
from detectors.summary import decode, encode_chunks


class DictKeyCounter(KeyCounter):
    """The stage before the change: ``_tot`` a dict per label (close() verbatim)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._tot = {}  # type: ignore[assignment]

    def close(self, part: int) -> list[dict[str, Any]]:
        marks = self._marks
        if len(marks) < self.sources:
            return []
        b = min(marks.values())
        if b <= self.boundary:
            return []
        self.boundary = b
        out = []
        for w in sorted(s for s in self._open if s < b):
            win = self._open.pop(w)
            missing = win.chunks.incomplete()
            if missing:
                self.incomplete += 1
            cw = w - w % self._span
            if cw > self._cw_start:
                self._cw_start = cw
                self._tot = {}  # type: ignore[assignment]
                self._cw_first = win.first_offset
            elif self._cw_first is None:
                self._cw_first = win.first_offset
            tot = self._tot
            for label, n in win.counts.items():
                tot[label] = tot.get(label, 0) + n  # type: ignore[index]
            keys = [[label, tot[label]] for label in sorted(win.touched)]  # type: ignore[index]
            wt = {"t": "wt", "w": w, "p": part, "keys": keys,
                  "susp": sorted(win.susp, key=lambda d: d["a"])}
            if win.groups:
                wt["g"] = win.groups
            out.append(wt)
        return out


def _batch(rng: random.Random, w: float, src: int, pool: list[str]) -> dict[str, Any]:
    labels = rng.sample(pool, rng.randint(0, min(len(pool), 300)))
    keys = [[lab, rng.choice([1, 1, 2, 5, rng.randint(1, 10**6)]), int(rng.random() < 0.2)]
            for lab in sorted(labels)]
    susp = [{"a": f"acct-{rng.randint(0, 999):03d}", "x": rng.random()}
            for _ in range(rng.randint(0, 3))]
    return {"t": "kb", "w": w, "p": src, "keys": keys, "susp": susp}


def _feed(kcs: list[KeyCounter], seed: int) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    sources = rng.randint(1, 3)
    pool = [f"{k}:{i:06d}" for k in ("pay", "ip24", "asn", "cohort") for i in range(400)]
    outs: list[list[dict[str, Any]]] = [[] for _ in kcs]
    offset = 0
    sent: list[bytes] = []
    for step in range(rng.randint(15, 40)):  # minutes; cluster windows of 5 minutes
        w = step * 60.0
        for src in range(sources):
            raws = encode_chunks(_batch(rng, w, src, pool), budget=rng.choice([512, 4096, 10**6]))
            rng.shuffle(raws)
            sent += raws
            if rng.random() < 0.3:  # redelivery of something already sent, maybe late
                raws = raws + rng.sample(sent, min(len(sent), 3))
            for raw in raws:
                for kc in kcs:
                    kc.add(decode(raw), offset=offset)
                offset += 1
            if rng.random() < 0.8 or step % 7 == 0:
                for kc in kcs:
                    kc.watermark(src, w + 60.0, sources=sources, offset=offset)
                offset += 1
        for kc, out in zip(kcs, outs, strict=True):
            out += kc.close(part=0)
    for src in range(sources):
        for kc in kcs:
            kc.watermark(src, 10**6, sources=sources)
    for kc, out in zip(kcs, outs, strict=True):
        out += kc.close(part=0)
    return outs


def test_window_totals_equal_the_dict_based_stage_on_random_streams() -> None:
    for seed in range(40):
        new, old = KeyCounter(60, 5, 1), DictKeyCounter(60, 5, 1)
        got, want = _feed([new, old], seed)
        assert want, seed
        assert got == want, seed
        assert (new.late, new.duplicates, new.incomplete) == (
            old.late, old.duplicates, old.incomplete)
        assert new.committable() == old.committable()
        assert new.tracked_keys == len(old._tot)


def test_label_hashes_are_stable_blake2b() -> None:
    labels = ["pay:card-1", "ip24:10.0.0", "é:ü", ""]
    want = [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")
            for s in labels]
    assert label_hashes(labels).tolist() == want
    assert label_hashes([]).tolist() == []


def test_totals_grow_sorted_and_exact() -> None:
    rng = random.Random(2)
    t, ref = Totals(), {}
    for _ in range(30):
        labels = [f"k{rng.randint(0, 5000)}" for _ in range(rng.randint(0, 800))]  # repeats
        ns = [rng.randint(0, 9) for _ in labels]
        t.add(labels, ns)
        for lab, n in zip(labels, ns, strict=True):
            ref[lab] = ref.get(lab, 0) + n
        assert len(t) == len(ref)
        assert bool(np.all(t.keys[1:] > t.keys[:-1]))
        assert t.keys.dtype == np.uint64 and t.counts.dtype == np.uint8
    probe = [*ref, "never", "k-1"]
    assert t.get(probe) == [ref.get(p, 0) for p in probe]
    assert t.keys.nbytes + t.counts.nbytes == 9 * len(ref)
    assert len(t.big) == sum(1 for n in ref.values() if n >= 255)


def test_totals_past_254_move_to_big_and_stay_exact() -> None:
    rng = random.Random(4)
    t, ref = Totals(), {}
    for _ in range(60):
        labels = [f"k{rng.randint(0, 40)}" for _ in range(rng.randint(1, 60))]
        ns = [rng.choice([0, 1, 2, 7, 120, 254, 255, 256, 1000]) for _ in labels]
        t.add(labels, ns)
        for lab, n in zip(labels, ns, strict=True):
            ref[lab] = ref.get(lab, 0) + n
        assert t.get([*ref, "never"]) == [*ref.values(), 0]
        assert sorted(t.big.values()) == sorted(n for n in ref.values() if n >= 255)
        assert bool(np.all((t.counts == 255) == np.isin(t.keys, list(t.big))))
    with pytest.raises(ValueError, match="never negative"):
        t.add(["k1"], [-1])


def test_totals_past_int64_stay_exact() -> None:
    t = Totals()
    t.add(["a", "b"], [2**62, 1])
    t.add(["a", "a", "c"], [2**62, 2**62, 7])
    assert t.get(["a", "b", "c"]) == [3 * 2**62, 1, 7]
    assert all(type(v) is int for v in t.get(["a", "b"]))


def test_labels_of_one_hash_share_a_total(monkeypatch: Any) -> None:
    """The documented cost of hashing (~3e-6 per cluster window at 10^7 keys): forced
    here, two labels of one hash add up instead of failing."""
    import detectors.keycount as kcmod

    monkeypatch.setattr(kcmod, "label_hashes",
                        lambda labels: np.array([7 for _ in labels], dtype=np.uint64))
    t = kcmod.Totals()
    t.add(["a", "b"], [1, 2])
    assert t.get(["a", "b", "c"]) == [3, 3, 3]
