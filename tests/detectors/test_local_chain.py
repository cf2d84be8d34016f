"""The in-process cluster stages hand a window's key batch to the per-key stage as columns
(:func:`detectors.summary.fold_keys` → :meth:`detectors.keycount.KeyCounter.add_folded`)
instead of routing, encoding, decoding and adding it (issue 16: that round trip was a
third of the chain on the worst mix). Both must leave the per-key stage in the same state:
compared here on random windows (shared and unique keys, suspects, groups, cluster-window
resets, chunked batches, redeliveries, late batches) and through the whole chain."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from detectors.clusterchain import LocalClusterStages
from detectors.findings import Finding
from detectors.keycount import KeyCounter
from detectors.summary import AccountSummary, decode, encode_chunks, fold_keys, route

SUSPICIOUS = 0.5


def _random_window(rng: random.Random, start: float, n: int) -> list[AccountSummary]:
    """``n`` accounts drawing keys from small pools (so labels repeat across accounts and
    suspects share them) and unique ones, some with labels precomputed, some without."""
    out = []
    for i in range(n):
        keys: list[tuple[Any, ...]] = []
        if rng.random() < 0.9:
            keys.append(("ip24", f"10.0.{rng.randrange(40)}"))
        if rng.random() < 0.8:
            keys.append(("asn", rng.choice([64500, 64501, 7, None])))
        if rng.random() < 0.5:
            keys.append(("pay", f"card-{rng.randrange(10**6)}"))  # mostly unique
        if rng.random() < 0.3:
            keys.append(("cohort", rng.randrange(3), rng.choice([64500, None])))
        if rng.random() < 0.2:
            keys.append(("ua", "ünï/" + "x" * rng.randrange(300)))
        x = rng.choice([0.0, 0.2, SUSPICIOUS, 0.9, rng.random()])
        s = AccountSummary(f"a{rng.randrange(10**5):05d}-{i}", start, keys, x,
                           rng.random() < 0.5, rng.random() < 0.5, rng.randrange(1, 9),
                           rng.randrange(10**4), rng.choice([None, "org-1"]),
                           {"m": 1} if x >= SUSPICIOUS else None,
                           ["0123456789abcdef"] if x >= SUSPICIOUS else [],
                           rng.random() < 0.1)
        if rng.random() < 0.5:  # as the pipeline makes them: labels alongside the keys
            s.labels = [":".join("-" if v is None else str(v) for v in k) for k in keys]
        out.append(s)
    return sorted(out, key=lambda s: s.account_id)


def _group(rng: random.Random, start: float) -> Finding:
    members = [f"m{i}" for i in range(rng.randrange(1, 6))]
    return Finding("cluster", f"swarm-{rng.randrange(99)}", "cohort_swarm", start, start + 60,
                   rng.random(), 0.5, "warning",
                   {"keys": ("pay:c", "ip24:10.0.1"), "share": 1 / 3, "nan": float("nan")},
                   member_count=len(members), members=members, org_id=None,
                   member_orgs={m: "o" for m in members})


def _wire_add(kc: KeyCounter, start: float, summaries: list[AccountSummary],
              groups: list[Finding], budget: int) -> list[bool]:
    """The worker's way: route, encode (chunked), decode, add."""
    return [kc.add(decode(raw))
            for rec in route(start, 0, summaries, parts=1, suspicious=SUSPICIOUS,
                             groups=groups).values()
            for raw in encode_chunks(rec, budget=budget)]


def _folded_add(kc: KeyCounter, start: float, summaries: list[AccountSummary],
                groups: list[Finding]) -> bool:
    counts, scounts, susp = fold_keys(summaries, parts=1, suspicious=SUSPICIOUS)
    return kc.add_folded(start, 0, counts, scounts, susp.get(0, []),
                         [f.to_dict() for f in groups])


@pytest.mark.parametrize("seed", range(6))
def test_folded_batches_count_as_the_decoded_wire_batches(seed: int) -> None:
    rng = random.Random(seed)
    budget = rng.choice([2048, 16384, 1 << 20])  # many chunks, some, none
    wire, folded = KeyCounter(60, cluster_windows=3), KeyCounter(60, cluster_windows=3)
    for minute in range(8):  # crosses two cluster-window resets
        start = minute * 60.0
        summaries = _random_window(rng, start, rng.choice([0, 1, 5, 200, 800]))
        groups = [_group(rng, start) for _ in range(rng.randrange(3))]
        assert all(_wire_add(wire, start, summaries, groups, budget))
        assert _folded_add(folded, start, summaries, groups)
        if rng.random() < 0.3:  # redelivered: counted once on both paths
            assert not any(_wire_add(wire, start, summaries, groups, budget))
            assert not _folded_add(folded, start, summaries, groups)
        for kc in (wire, folded):
            kc.watermark(0, start + 60.0)
        a, b = wire.close(part=0), folded.close(part=0)
        # What goes on to campaign assembly: the same bytes. (The folded groups are the
        # findings' own dicts, tuples and NaN included, not their decoded JSON.)
        assert [orjson.dumps(r) for r in a] == [orjson.dumps(r) for r in b]
        assert [{**r, "g": None} for r in a] == [{**r, "g": None} for r in b]
        assert wire.tracked_keys == folded.tracked_keys
        # Late: its window has closed on both.
        assert not any(_wire_add(wire, start, summaries, groups, budget))
        assert not _folded_add(folded, start, summaries, groups)
    # Counted per record: the wire path counts each chunk.
    assert folded.late == 8 <= wire.late
    assert folded.duplicates <= wire.duplicates
    assert wire.incomplete == folded.incomplete == 0


def test_a_folded_batch_adds_to_a_window_other_sources_filled() -> None:
    """The folded batch of one source into a window another source's wire batch opened (the
    window's counts already hold labels: added to, not replaced)."""
    rng = random.Random(11)
    one, two = (_random_window(rng, 0.0, 300) for _ in range(2))
    wire, mixed = KeyCounter(60, sources=2), KeyCounter(60, sources=2)
    for kc in (wire, mixed):
        for raw in encode_chunks(route(0.0, 1, one, parts=1, suspicious=SUSPICIOUS)[0]):
            kc.add(decode(raw))
    for raw in encode_chunks(route(0.0, 0, two, parts=1, suspicious=SUSPICIOUS)[0]):
        wire.add(decode(raw))
    _folded_add(mixed, 0.0, two, [])
    for kc in (wire, mixed):
        kc.watermark(0, 60.0)
        kc.watermark(1, 60.0)
    assert wire.close(part=0) == mixed.close(part=0)


class WireClusterStages(LocalClusterStages):
    """The chain before the change: every key batch through route and the codec."""

    def window(self, start: float, summaries: list[AccountSummary],
               groups: Any = ()) -> list[Finding]:
        end = start + self.window_s
        for rec in route(start, 0, summaries, parts=1, suspicious=self.suspicious,
                         groups=groups).values():
            for raw in encode_chunks(rec):
                self.keys.add(decode(raw))
        self.keys.watermark(0, end, sources=1)
        asm = self.assembly
        for rec in self.keys.close(part=0):
            for raw in encode_chunks(rec):
                asm.add(decode(raw))
        asm.watermark(0, end, parts=1)
        return asm.close()


def test_the_local_chain_finds_what_the_wire_chain_finds() -> None:
    rng = random.Random(3)
    new, old = (cls(window_s=60, cluster_min_members=5)
                for cls in (LocalClusterStages, WireClusterStages))
    found_new, found_old = [], []
    for minute in range(14):
        start = minute * 60.0
        summaries = _random_window(rng, start, 400)
        # A campaign: ten suspects on one card, every window.
        summaries += [AccountSummary(f"h{minute % 6}-{i}", start, [("pay", "card-1")], 0.8,
                                     True, True, 1, 2000, None, {"m": 1}, [])
                      for i in range(10)]
        summaries.sort(key=lambda s: s.account_id)
        found_new += new.window(start, summaries)
        found_old += old.window(start, summaries)
    assert "cluster_campaign" in {f.detector for f in found_old}
    assert [f.to_dict() for f in found_new] == [f.to_dict() for f in found_old]


class _Recorder(LocalClusterStages):
    """Keeps what the pipeline hands the in-process stages, then runs them."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.seen: list[tuple[float, list[AccountSummary], list[str]]] = []

    def window(self, start: float, summaries: list[AccountSummary], groups: Any = (),
               *, plain_labels: Any = ()) -> list[Finding]:
        self.seen.append((start, list(summaries), list(plain_labels)))
        return super().window(start, summaries, groups, plain_labels=plain_labels)


def test_the_pipeline_hands_over_the_keys_of_every_summary_the_worker_would_publish() -> None:
    """With in-process stages the pipeline makes summaries of the suspects only and hands
    the other account-windows' key labels over flat: the same key batch as the worker's
    summaries of every account-window (``local_clusters=False``)."""
    from detectors.pipeline import Detection
    from tests.detectors.synth import benign, hydra, merged

    events = merged(hydra(n=120, hours=4, seed=2), benign(n=300, hours=4, seed=3))
    local = Detection()
    assert local.cluster_stages is not None
    rec = local.cluster_stages = _Recorder(**local.cluster_kwargs)
    worker = Detection(local_clusters=False)
    worker.summarize_all = True  # every account-window's summary, as before issue 16
    for det in (local, worker):
        for ev in events:
            det.add(ev)
        det.advance(events[-1].ts + 3600.0)
    published = worker.pop_summaries()
    bar = rec.suspicious
    assert len(published) == len(rec.seen) > 100
    n_plain = n_susp = 0
    for win, (start, suspects, plain) in zip(published, rec.seen, strict=True):
        assert win.start == start
        everyone = win.summaries
        want = fold_keys(everyone, parts=1, suspicious=bar)
        got = fold_keys(suspects, parts=1, suspicious=bar)
        got[0].update(plain)
        assert got == want  # counts, suspects' counts, suspects' wire summaries
        assert all(s.extraction >= bar for s in suspects)
        n_plain += len(plain)
        n_susp += len(suspects)
    assert n_plain and n_susp  # both kinds of account-window were there
