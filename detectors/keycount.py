"""The per-key stage: how many account-windows carried each cluster key in the current
cluster window, for the keys of one key partition.

This is the part of cluster detection that grows with traffic (every key of every account,
every window), so it is partitioned by key: each instance sees the key batches
(:func:`detectors.summary.route`) of its partition from every source. Windows close in
event time: a source's watermark record says every window starting before ``b`` is closed
there, and a window closes here once every source said so. At close, the keys a suspicious
account touched get their running total (the denominator of their suspicious share), and
the window's suspicious summaries go on with them to campaign assembly in one *window
total* record. A batch of a window that is already closed is late (a replay after a crash:
it was counted before); a second batch of the same (window, source, chunk) is a duplicate
(see :class:`~detectors.summary.ChunkLedger`). Both are ignored and counted. A window that
closes while a source's chunks are not all in is counted in ``incomplete`` and logged.

Examples
--------
>>> kc = KeyCounter(window_s=60, cluster_windows=10, sources=1)
>>> kc.add({"t": "kb", "w": 0.0, "p": 0, "keys": [["pay:c1", 3, 2], ["asn:1", 9, 0]],
...         "susp": []}, offset=0)
True
>>> kc.add({"t": "kb", "w": 0.0, "p": 0, "keys": [], "susp": []}, offset=1)  # redelivered
False
>>> kc.watermark(0, 60.0, offset=2)
>>> out = kc.close(part=0)
>>> [(r["w"], r["keys"]) for r in out]
[(0.0, [['pay:c1', 3]])]
>>> kc.boundary
60.0
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from detectors.summary import ChunkLedger, chunk_of

__all__ = ["KeyCounter"]

log = logging.getLogger(__name__)


def label_hashes(labels: Iterable[str]) -> np.ndarray:
    """Stable 64-bit hashes of key labels (blake2b, 8-byte digest, little-endian): the same
    in every process and run, unlike the salted built-in ``hash``.

    >>> label_hashes(["pay:c1", "asn:1"]).tolist() == [
    ...     int.from_bytes(hashlib.blake2b(b"pay:c1", digest_size=8).digest(), "little"),
    ...     int.from_bytes(hashlib.blake2b(b"asn:1", digest_size=8).digest(), "little")]
    True
    """
    b2 = hashlib.blake2b
    return np.frombuffer(b"".join([b2(s.encode(), digest_size=8).digest() for s in labels]),
                         dtype="<u8")


# A key's count in the array, or _BIG: its count (past 254) is in Totals.big.
_BIG = 255
_INT64_LIMIT = 2**63


class Totals:
    """Running counts per key, keyed by the 64-bit hash of the label: two arrays sorted by
    hash, ``uint64`` hashes and ``uint8`` counts, 9 B per key and no label strings (issue
    16: 16 B with ``int64`` counts). Most keys are one account's (its card, /24, org) and
    count a few account-windows; a count past 254 is kept exact in :attr:`big` (hash ->
    Python int; the array then holds ``255``). The labels that go on the wire are those a
    suspicious account touched, which the open window keeps; the total only has to be
    found again by their hash.

    Two labels with the same hash would share one total. With 64-bit hashes and ``k`` keys
    in a cluster window the chance is about ``k**2 / 2**65``: ~3e-6 per cluster window at
    10^7 keys, ~3e-10 at 10^5 (see docs/performance.md, "Detector state per account").

    >>> t = Totals()
    >>> t.add(["a", "b"], [2, 3]); t.add(["b", "c"], [1, 500])
    >>> t.get(["c", "b", "zz", "a"])
    [500, 4, 0, 2]
    >>> len(t), len(t.big)
    (3, 1)
    """

    __slots__ = ("big", "counts", "keys")

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype=np.uint64)
        self.counts: np.ndarray = np.empty(0, dtype=np.uint8)
        self.big: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, labels: Iterable[str], counts: Iterable[int]) -> None:
        """Add ``counts`` (account-windows: never negative) to the totals of ``labels``
        (labels may repeat)."""
        h = label_hashes(labels)
        if not len(h):
            return
        n = list(counts)
        if min(n) < 0:
            raise ValueError("a count of account-windows is never negative")
        # Increments as int64 while no sum of them can overflow it, else as Python ints.
        n_arr = np.array(n, dtype=np.int64 if sum(n) < _INT64_LIMIT - _BIG else object)
        order = np.argsort(h, kind="stable")
        h, n_arr = h[order], n_arr[order]
        if len(h) > 1:
            starts = np.flatnonzero(np.concatenate(([True], h[1:] != h[:-1])))
            if len(starts) < len(h):  # a label twice, or two labels of one hash
                h, n_arr = h[starts], np.add.reduceat(n_arr, starts)
        keys, small, big = self.keys, self.counts, self.big
        pos = np.searchsorted(keys, h)
        found = pos < len(keys)
        found[found] = keys[pos[found]] == h[found]
        if found.any():
            at, hf, inc = pos[found], h[found], n_arr[found]
            cur = small[at]
            was_big = cur == _BIG
            tot = cur.astype(inc.dtype) + inc
            now_big = ~was_big & (tot >= _BIG)
            for hv, v in zip(hf[was_big].tolist(), inc[was_big].tolist(), strict=True):
                big[hv] += v
            for hv, v in zip(hf[now_big].tolist(), tot[now_big].tolist(), strict=True):
                big[hv] = v
            stay = ~(was_big | now_big)
            small[at[stay]] = tot[stay]
            small[at[now_big]] = _BIG
        new = ~found
        if new.any():
            hn, nv = h[new], n_arr[new]
            over = nv >= _BIG
            for hv, v in zip(hn[over].tolist(), nv[over].tolist(), strict=True):
                big[hv] = v
            self.keys = np.insert(keys, pos[new], hn)
            self.counts = np.insert(small, pos[new], np.where(over, _BIG, nv).astype(np.uint8))

    def get(self, labels: Iterable[str]) -> list[int]:
        """The totals of ``labels`` (0 for a label never added), as Python ints."""
        h = label_hashes(labels)
        keys = self.keys
        if not len(h) or not len(keys):
            return [0] * len(h)
        pos = np.searchsorted(keys, h)
        pos[pos == len(keys)] = 0
        hit = keys[pos] == h
        vals = np.where(hit, self.counts[pos], 0)
        out: list[int] = vals.tolist()
        for i in np.flatnonzero(vals == _BIG).tolist():
            out[i] = self.big[int(h[i])]
        return out


class _Window:
    __slots__ = ("chunks", "counts", "first_offset", "groups", "susp", "touched")

    def __init__(self, offset: int | None) -> None:
        self.counts: dict[str, int] = {}
        self.touched: set[str] = set()
        self.susp: list[dict[str, Any]] = []
        self.groups: list[dict[str, Any]] = []
        self.chunks = ChunkLedger()
        self.first_offset = offset


class KeyCounter:
    """Running account-window totals per key of one key partition.

    Parameters
    ----------
    window_s, cluster_windows
        Account window length and account windows per cluster window: totals restart at
        every cluster-window boundary, as :class:`~detectors.clusters.ClusterDetector` reads
        them.
    sources
        Number of sources (``requests`` partitions) whose watermarks must all pass a window
        before it closes; raised when a watermark record names more.
    """

    def __init__(self, window_s: float = 60.0, cluster_windows: int = 10, sources: int = 1) -> None:
        self.window_s = window_s
        self.cluster_windows = cluster_windows
        self.sources = sources
        self._span = window_s * cluster_windows
        self._open: dict[float, _Window] = {}
        # Per key hash, not label: see Totals (issue 16, state per account).
        self._tot = Totals()
        self._cw_start = float("-inf")
        self._marks: dict[int, float] = {}
        self.boundary = float("-inf")
        self._next_offset: int | None = None
        # First offset of each closed window of the current cluster window: a restart must
        # read them again to rebuild the totals.
        self._cw_first: int | None = None
        self.late = 0
        self.duplicates = 0
        self.incomplete = 0

    def add(self, rec: dict[str, Any], offset: int | None = None) -> bool:
        """Count one key batch; False when it was late or a duplicate."""
        self._seen(offset)
        w = float(rec["w"])
        if w < self.boundary:
            self.late += 1
            return False
        win = self._open.get(w)
        if win is None:
            win = self._open[w] = _Window(offset)
        if not win.chunks.take(int(rec["p"]), *chunk_of(rec)):
            self.duplicates += 1
            return False
        counts, touched = win.counts, win.touched
        for label, n, ns in rec["keys"]:
            counts[label] = counts.get(label, 0) + n
            if ns:
                touched.add(label)
        win.susp.extend(rec["susp"])
        # Group findings pass through untouched (campaign assembly checks and folds them).
        win.groups.extend(rec.get("g", ()))
        return True

    def add_folded(
        self,
        w: float,
        source: int,
        counts: dict[str, int],
        scounts: Mapping[str, int],
        susp: list[dict[str, Any]],
        groups: list[dict[str, Any]],
    ) -> bool:
        """Count one whole key batch handed over in process: the columns
        :func:`~detectors.summary.fold_keys` made of a window's summaries (``counts`` and
        ``scounts`` per label, the suspects' wire summaries) and the window's wire groups.
        The same as :meth:`add` of the batch :func:`~detectors.summary.route` makes of them,
        encoded and decoded (a test compares the two), without building and parsing a
        record of a few entries per account: in-process the batch is this stage's own
        data, not input (:class:`~detectors.clusterchain.LocalClusterStages`). False when
        it was late or a duplicate, as :meth:`add`. ``counts`` becomes the window's (it is
        kept and added to, not copied)."""
        if w < self.boundary:
            self.late += 1
            return False
        win = self._open.get(w)
        if win is None:
            win = self._open[w] = _Window(None)
        if not win.chunks.take(source, 0, 1):
            self.duplicates += 1
            return False
        if win.counts:
            wc = win.counts
            for label, n in counts.items():
                wc[label] = wc.get(label, 0) + n
        else:
            win.counts = counts  # the caller's (a Counter): adopted, not copied
        # A label a suspect carried is in scounts with a count of at least one.
        win.touched.update(scounts)
        win.susp.extend(susp)
        win.groups.extend(groups)
        return True

    def watermark(self, source: int, closed_before: float, *, sources: int | None = None,
                  offset: int | None = None) -> None:
        """Source ``source`` closed every window starting before ``closed_before``."""
        self._seen(offset)
        if sources is not None and sources > self.sources:
            self.sources = sources
        if closed_before > self._marks.get(source, float("-inf")):
            self._marks[source] = closed_before

    def _seen(self, offset: int | None) -> None:
        if offset is not None:
            self._next_offset = offset + 1

    def close(self, part: int) -> list[dict[str, Any]]:
        """Close every window all sources have passed; return their window-total records
        (only windows that had accounts), in time order."""
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
                log.warning("per-key stage: window %s of key partition %s closed without all "
                            "chunks of %d sources", w, part, missing)
            cw = w - w % self._span
            if cw > self._cw_start:
                self._cw_start = cw
                self._tot = Totals()
                self._cw_first = win.first_offset
            elif self._cw_first is None:
                self._cw_first = win.first_offset
            counts = win.counts
            self._tot.add(counts, counts.values())
            touched = sorted(win.touched)
            keys = [[label, n] for label, n in zip(touched, self._tot.get(touched), strict=True)]
            wt = {"t": "wt", "w": w, "p": part, "keys": keys,
                  "susp": sorted(win.susp, key=lambda d: d["a"])}
            if win.groups:
                wt["g"] = win.groups
            out.append(wt)
        return out

    def committable(self) -> int | None:
        """The offset a restart must read from to rebuild this state: the first batch of
        the current cluster window's closed windows, or of the oldest open window."""
        firsts = [w.first_offset for w in self._open.values() if w.first_offset is not None]
        if self._cw_first is not None and self.boundary < self._cw_start + self._span:
            firsts.append(self._cw_first)
        return min(firsts) if firsts else self._next_offset

    @property
    def tracked_keys(self) -> int:
        return len(self._tot)
