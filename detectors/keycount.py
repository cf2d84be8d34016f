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

import logging
from typing import Any

from detectors.summary import ChunkLedger, chunk_of

__all__ = ["KeyCounter"]

log = logging.getLogger(__name__)


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
        self._tot: dict[str, int] = {}
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
                self._tot = {}
                self._cw_first = win.first_offset
            elif self._cw_first is None:
                self._cw_first = win.first_offset
            tot = self._tot
            for label, n in win.counts.items():
                tot[label] = tot.get(label, 0) + n
            keys = [[label, tot[label]] for label in sorted(win.touched)]
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
