"""The static per-account rate limit, scored like the detectors: an account is flagged the
moment it sends its (T+1)-th request within one clock hour of event time. T is chosen as
the smallest limit whose benign false-alert rate is no higher than the detectors', so the
two are compared at the same false-alert budget.

>>> import numpy as np
>>> acct = np.array([0, 0, 0, 1]); ts = np.array([10.0, 20.0, 30.0, 40.0])
>>> hc = HourlyCounts.build(acct, ts, start_ts=0.0)
>>> [int(x) for x in hc.counts], hc.flag_times(2).tolist()
([3, 1], [30.0])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from evaluation.score import AlertOutcome, Labels, Score, score_outcomes

__all__ = ["HourlyCounts", "rate_limit_score", "read_account_times"]


def read_account_times(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(account ids, account index per event, ts per event) of an events file; lines that
    are not events with a numeric ``ts`` are skipped."""
    ids: dict[str, int] = {}
    acct: list[int] = []
    ts: list[float] = []
    loads = orjson.loads
    with open(path, "rb") as f:
        for line in f:
            try:
                ev = loads(line)
                a, t = ev["account_id"], ev["ts"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            if not isinstance(a, str) or not isinstance(t, int | float):
                continue
            acct.append(ids.setdefault(a, len(ids)))
            ts.append(t)
    return list(ids), np.array(acct, dtype=np.int64), np.array(ts, dtype=float)


@dataclass
class HourlyCounts:
    """Requests per (account, clock hour); ``order`` sorts events by cell then time."""

    cell_acct: np.ndarray
    cell_hour: np.ndarray
    counts: np.ndarray
    cell_first: np.ndarray  # index into the sorted events of each cell's first event
    sorted_ts: np.ndarray

    @classmethod
    def build(cls, acct: np.ndarray, ts: np.ndarray, start_ts: float) -> HourlyCounts:
        hour = np.floor((ts - start_ts) / 3600.0).astype(np.int64)
        hour -= hour.min() if len(hour) else 0
        span = int(hour.max()) + 2 if len(hour) else 1
        key = acct * span + hour
        order = np.lexsort((ts, key))
        k = key[order]
        cells, first, counts = np.unique(k, return_index=True, return_counts=True)
        return cls(cells // span, cells % span, counts, first, ts[order])

    def exceeding(self, limit: int) -> np.ndarray:
        return self.counts > limit

    def episodes(self, limit: int) -> np.ndarray:
        """Cells that start a run of consecutive over-limit hours of one account: each such
        run is one rate-limit alert."""
        over = self.exceeding(limit)
        prev_same = np.zeros(len(over), dtype=bool)
        prev_same[1:] = (self.cell_acct[1:] == self.cell_acct[:-1]) & (
            self.cell_hour[1:] == self.cell_hour[:-1] + 1
        )
        prev_over = np.zeros(len(over), dtype=bool)
        prev_over[1:] = over[:-1]
        return over & ~(prev_same & prev_over)

    def flag_times(self, limit: int) -> np.ndarray:
        """Time of the request that crossed the limit, per over-limit cell."""
        over = self.exceeding(limit)
        return self.sorted_ts[self.cell_first[over] + limit]


def _outcomes(labels: Labels, ids: list[str], hc: HourlyCounts, limit: int) -> list[AlertOutcome]:
    ep = hc.episodes(limit)
    over = hc.exceeding(limit)
    times = np.full(len(over), np.nan)
    times[over] = hc.flag_times(limit)
    out = []
    for i in np.nonzero(ep)[0].tolist():
        a = ids[hc.cell_acct[i]]
        t = float(times[i])
        out.append(AlertOutcome(f"rl-{a}-{i}", "account", a, "rate_limit", t, "warning",
                                {a: t}, not labels.is_campaign(a)))
    return out


def rate_limit_score(
    labels: Labels, events_path: str | Path, target_false_alerts: int
) -> tuple[int, Score]:
    """The limit T (requests per account per clock hour) with at most
    ``target_false_alerts`` benign episodes, and the score of that limit."""
    ids, acct, ts = read_account_times(events_path)
    hc = HourlyCounts.build(acct, ts, labels.start_ts)
    campaign = np.array([labels.is_campaign(a) for a in ids], dtype=bool)
    benign_cell = ~campaign[hc.cell_acct] if len(ids) else np.zeros(0, dtype=bool)
    top = int(hc.counts.max()) if len(hc.counts) else 0
    lo, hi = 0, top  # at limit=top nobody is flagged
    while lo < hi:
        mid = (lo + hi) // 2
        if int((hc.episodes(mid) & benign_cell).sum()) <= target_false_alerts:
            hi = mid
        else:
            lo = mid + 1
    return lo, score_outcomes(labels, _outcomes(labels, ids, hc, lo), f"rate limit T={lo}/h")
