"""Issue 16: the account stage makes a summary (and key tuples) only of the suspects of a
closed window and hands the other account-windows' key labels to ``route`` flat, per source
(:class:`detectors.summary.WindowSummaries`). The per-key topic must not notice: here the
stage runs both ways over the same random traffic (several sources and key partitions, no,
a few and only suspects, tiny chunks, accounts whose detection raises) and every record it
writes is compared byte for byte, in order, with the way before the change: a summary of
every account-window, split by source as the worker always did (kept below as the
reference)."""

from __future__ import annotations

import functools
import random
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

import detectors.pipeline as pipeline
import streams.stages as stages
from detectors.events import Event
from detectors.findings import Finding
from detectors.pipeline import Detection
from detectors.summary import AccountSummary, WindowSummaries, decode, encode, encode_chunks, route
from detectors.windows import ClosedWindow
from streams.config import Config
from streams.metrics import Metrics
from streams.stages import IngestStage
from tests.detectors.synth import benign, hydra, merged

SOURCES = 4


class ReferenceStage(IngestStage):
    """The account stage before the change: every account-window has a summary
    (``Detection.summarize_all``) and the window is split by source from the summaries,
    as ``_publish_summaries`` did at e49514d."""

    def _publish_summaries(self) -> None:
        det = self.detection
        parts, susp = self.key_parts, det.suspicious
        out = self._cluster_out
        account_partition = self.account_partition
        for win in det.pop_summaries():
            # With summarize_all, no account-window is left without a summary.
            assert not win.labels and all(n == -1 for n in win.sizes)
            start, summaries, groups = win.start, win.summaries, win.groups
            by_source: dict[int, list[AccountSummary]] = {}
            for s in summaries:
                p = account_partition.get(s.account_id)
                by_source.setdefault(p if p is not None else 0, []).append(s)
            if groups and not by_source:
                by_source[min(self._owned, default=0)] = []
            first = min(by_source, default=0)
            for p, group in by_source.items():
                for q, rec in route(start, p, group, parts=parts, suspicious=susp,
                                    groups=groups if p == first else ()).items():
                    # The stage module's (the test makes its chunks tiny there).
                    out.extend((q, raw) for raw in stages.encode_chunks(rec))
        b = det.windower.closed_before
        if b > self._marked and self._owned:
            self._marked = b
            for p in sorted(self._owned):
                wm = encode({"t": "wm", "p": p, "n": max(self.sources, p + 1), "b": b})
                out.extend((q, wm) for q in range(parts))


def _traffic(seed: int) -> list[Event]:
    """Two hydras (young, one templated request an hour: suspects, some of them flagged
    harvesters) among chat users (several events an account-window), over three hours; a
    few accounts named ``bad`` make detection raise."""
    # A recent start: account creation times years before it still validate.
    t0 = 1_800_000_000.0
    return merged(hydra(n=30, hours=3, seed=seed, prefix="h", start=t0),
                  hydra(n=12, hours=3, seed=seed + 50, prefix="bad-h", start=t0),
                  benign(n=400, hours=3, seed=seed + 100, start=t0))


def _stage(cls: type[IngestStage], suspicious: float, *, all_summaries: bool) -> IngestStage:
    det = Detection(local_clusters=False, suspicious=suspicious)
    det.summarize_all = all_summaries
    st = cls(Config(), Metrics.create(CollectorRegistry()), detection=det)
    st.sources = SOURCES
    st.key_parts = 3
    st.assigned(range(SOURCES))
    return st


def _run(st: IngestStage, events: list[Event], seed: int) -> list[tuple[int, bytes]]:
    """Feed ``events`` in batches of random sizes; an account's events always come from
    one partition (random per account), as on the ``requests`` topic."""
    rng = random.Random(seed)
    source: dict[str, int] = {}
    offsets = [0] * SOURCES
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(events):
        n = rng.choice([1, 50, 400, 3000])
        batch = []
        for ev in events[i:i + n]:
            p = source.setdefault(ev.account_id, rng.randrange(SOURCES))
            batch.append((orjson.dumps(ev.to_dict()), p, offsets[p]))
            offsets[p] += 1
        i += n
        now = events[min(i, len(events)) - 1].ts + 1.0
        for p in range(SOURCES):  # every partition caught up: the watermark follows time
            st.fetched(p, position=offsets[p], end_offset=offsets[p], at=now)
        st.handle(batch, now=now)
        out += st.pop_cluster_records()
    st.tick(now=events[-1].ts + 7200.0)
    out += st.pop_cluster_records()
    return out


@pytest.fixture
def failing_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Detection raises for accounts named ``bad...`` (on both ways of making key labels):
    they must count in no batch, as before."""

    def failing(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapped(ev: Event) -> Any:
            if ev.account_id.startswith("bad"):
                raise RuntimeError("boom")
            return fn(ev)
        return wrapped

    monkeypatch.setattr(pipeline, "key_labels", failing(pipeline.key_labels))
    monkeypatch.setattr(pipeline, "labelled_keys", failing(pipeline.labelled_keys))


@pytest.fixture
def harvesters(monkeypatch: pytest.MonkeyPatch) -> None:
    """An account rule calls every account whose id ends in 3 a harvester (so few fire on
    three hours of synthetic traffic that the marking would go untested): the summaries of
    suspects among them carry ``h``, the others have no summary to mark."""
    hold = Detection._hold

    def marking(self: Detection, out: list[Finding], closed: ClosedWindow) -> None:
        hold(self, out, closed)
        out.extend(Finding("account", a, "account_extraction", closed.start, closed.end,
                           1.0, 0.5, "warning", {})
                   for a in closed.accounts if a.endswith("3"))

    monkeypatch.setattr(Detection, "_hold", marking)


@pytest.mark.usefixtures("failing_accounts", "harvesters")
@pytest.mark.parametrize(("suspicious", "share"), [(1.01, (0.0, 0.0)), (0.5, (0.02, 0.2)),
                                                   (0.0, (1.0, 1.0))])
@pytest.mark.parametrize("budget", [600, 1 << 20])
def test_the_per_key_topic_gets_the_same_bytes_as_from_every_summary(
    monkeypatch: pytest.MonkeyPatch, suspicious: float, share: tuple[float, float], budget: int
) -> None:
    # Tiny chunks: most batches are split (the split depends on every entry's bytes).
    monkeypatch.setattr(stages, "encode_chunks",
                        functools.partial(encode_chunks, budget=budget))
    events = _traffic(seed=7)
    new = _stage(IngestStage, suspicious, all_summaries=False)
    old = _stage(ReferenceStage, suspicious, all_summaries=True)
    # What the new stage's detection hands over, looked at on the way.
    seen: list[WindowSummaries] = []
    pop = new.detection.pop_summaries

    def spy() -> list[WindowSummaries]:
        got = pop()
        seen.extend(got)
        return got

    monkeypatch.setattr(new.detection, "pop_summaries", spy)
    got, want = _run(new, events, seed=3), _run(old, events, seed=3)
    assert got == want
    assert new.detection.detect_errors == old.detection.detect_errors > 0
    # The traffic was what the case is about.
    n_susp = sum(len(w.summaries) for w in seen)
    n_all = sum(len(w.accounts) for w in seen)
    assert n_all > 1000 and share[0] <= n_susp / n_all <= share[1]
    recs = [decode(raw) for _, raw in want]
    kbs = [r for r in recs if r["t"] == "kb"]
    assert len({r["p"] for r in kbs}) == SOURCES
    assert any("g" in r for r in kbs)  # swarm groups rode along
    if budget < 1000:
        assert sum("chunk" in r for r in kbs) > 100
    if n_susp:
        assert any(s.get("h") for r in kbs for s in r["susp"])  # harvesters marked
    assert not any(s["a"].startswith("bad") for r in kbs for s in r["susp"])


def test_by_source_keeps_each_account_windows_labels_with_its_source() -> None:
    """Sources in the order of their first account-window; an account the map does not
    know, or maps to None, is source 0; one source is the window as it is."""
    def summ(a: str) -> AccountSummary:
        return AccountSummary(a, 0.0, [], 0.9, True, True, 1, 1, None, None, [])

    w = WindowSummaries(0.0, [summ("s1"), summ("s2"), summ("s3")],
                        ["p1", "s1", "p2", "s2", "p3", "s3", "p4"],
                        [2, -1, 0, -1, 1, -1, 3],
                        ["a", "b", "c", "d", "e", "f"])
    got = w.by_source({"p1": 5, "s1": 2, "p2": 5, "s2": None, "p3": 2, "p4": 5})
    assert list(got) == [5, 2, 0]
    assert {p: ([s.account_id for s in ss], ls) for p, (ss, ls) in got.items()} == {
        5: ([], ["a", "b", "d", "e", "f"]), 2: (["s1"], ["c"]), 0: (["s2", "s3"], [])}
    one = w.by_source(dict.fromkeys(w.accounts, 1))
    assert list(one) == [1] and one[1] == (w.summaries, w.labels)
    assert WindowSummaries(0.0, [], [], [], []).by_source({}) == {}


def _route_one_by_one(window_start: float, source: int, summaries: list[AccountSummary], *,
                      parts: int, suspicious: float) -> dict[int, dict[str, Any]]:
    """``route`` before its entries were split by key partition in C: one
    ``key_partition`` call and append per label."""
    from collections import Counter

    from detectors.summary import key_label, key_partition

    counts: Counter[str] = Counter()
    scounts: Counter[str] = Counter()
    susp: dict[int, list[dict[str, Any]]] = {}
    for s in summaries:
        ls = [key_label(k) for k in s.keys]
        counts.update(ls)
        if s.extraction >= suspicious:
            scounts.update(ls)
            susp.setdefault(key_partition(s.account_id, parts), []).append(s.to_wire())
    out: dict[int, dict[str, Any]] = {}

    def batch(q: int) -> dict[str, Any]:
        if q not in out:
            out[q] = {"t": "kb", "w": window_start, "p": source, "keys": [], "susp": []}
        return out[q]

    batch(source % parts)
    for label in sorted(counts):
        batch(key_partition(label, parts))["keys"].append((label, counts[label],
                                                           scounts.get(label, 0)))
    for q, items in susp.items():
        batch(q)["susp"] = sorted(items, key=lambda d: d["a"])
    return out


@pytest.mark.parametrize("parts", [2, 3, 5, 16, 64])
def test_route_splits_by_key_partition_as_one_label_at_a_time(parts: int) -> None:
    rng = random.Random(parts)
    for n in (0, 1, 3, 40, 2000):
        summaries = [
            AccountSummary(f"a{i}", 60.0,
                           [("ip24", f"10.{rng.randrange(9)}.{rng.randrange(99)}"),
                            ("asn", rng.choice([1, 7, None])),
                            ("ua", rng.choice(["ünï/1", "x" * rng.randrange(1, 50)]))],
                           rng.random(), True, False, 1, 1, None, None, [])
            for i in range(n)]
        source = rng.randrange(8)
        got = route(60.0, source, summaries, parts=parts, suspicious=0.9)
        want = _route_one_by_one(60.0, source, summaries, parts=parts, suspicious=0.9)
        assert list(got) == list(want)  # the batches in the same order
        assert [encode(r) for r in got.values()] == [encode(r) for r in want.values()]
