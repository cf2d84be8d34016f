"""Univariate anomaly benchmark: RateDetector against River's univariate detectors.

``python -m bench.univariate`` builds a labelled corpus, runs every detector prequentially
(score each value, then learn it) and prints one table plus a ``BENCH `` JSON line. It
exists because the detectors' numbers on the account baselines say nothing about how the
public :class:`detectors.rate.RateDetector` ranks anomalies on series it was not built for.

The corpus (seeded; ``--seed``)
-------------------------------
Synthetic series, 10-minute steps over ``--days`` days (28 by default), timestamps from
Monday 2026-01-05 00:00 UTC, three seeds per family:

- ``daily``: a daily sinusoid plus Gaussian noise; spikes and dips of 4-12 sigma.
- ``weekly``: business hours (09-18 on weekdays, low at night and at weekends) with
  Gaussian noise; a weekday-level burst on a Sunday afternoon (only anomalous in context)
  and a spike.
- ``shift``: a flat level with noise; level shifts up and down (permanent).
- ``trend``: a linear trend under a daily cycle; spikes and a 6-hour ramp.
- ``heavy``: Student-t (3 degrees of freedom) noise around a daily cycle; spikes of
  15-40 noise scales and a permanent shift. Its tails make naive z-scores fire constantly.
- ``counts``: Poisson counts with a mean of 0.5-3 per step under a daily cycle; 1-3 hour
  bursts at 3-6 times the mean.

Real-looking series (``real`` family): requests per 10 minutes of the six busiest
always-active API clients in the ServeGen Alibaba trace (``--data``, default
``../shared/data/servegen/m-large``, 14 days, read-only and not shipped; the family is
skipped when the directory is missing), each with three injected anomalies drawn from:
one window at 2.5-4x, a 2-hour burst at 2x, a 1-hour drop to 10 %, and a permanent 1.6x
level shift. The traces' own unlabelled incidents count as false positives for everyone.

Each anomaly is placed after the first 20 % of its series, never overlapping another.

Scoring (NAB-like, fixed here so numbers are comparable across runs)
-------------------------------------------------------------------
For each anomaly the label window is ``[a, b]`` with ``a`` its onset and
``b = a + max(duration, 12) - 1`` steps (at least two hours). The first 15 % of every series
is a probation period: nothing there is scored. A detector *detects* at step ``i`` when its
score is ``>= theta``. Per series:

- the **first** detection inside window ``[a, b]`` earns ``A_TP * sigma(i)``, with
  ``sigma(i) = 2 / (1 + exp(5 * (r - 1))) - 1`` and ``r = (i - a) / (b - a + 1)``: 0.987 at
  the onset, falling to 0 at the window's end, so earlier is better; later detections in
  the same window neither earn nor cost;
- a window with no detection costs ``A_FN = 1``;
- **every** detection outside all windows costs ``A_FP`` (each step above threshold
  counts, as in NAB).

Profiles: ``standard`` (A_TP = 1, A_FN = 1, A_FP = 0.11) and ``low_fp`` (A_FP = 0.22).
A family's raw score ``S`` (summed over its series) is normalised to
``100 * (S - S_null) / (S_perfect - S_null)`` with ``S_null = -A_FN * windows`` (never
firing) and ``S_perfect = 0.987 * windows``: 0 is a silent detector, 100 a perfect one,
negative is worse than silence. Each detector gets one threshold per profile, the one that
maximises its total normalised score over the whole corpus (NAB's threshold optimisation),
searched over quantiles of its own post-probation scores.

``rank_auc`` is threshold-free: the probability that a window's highest score exceeds the
score of a random post-probation step outside every window (ties count half). It measures
whether scores *rank* anomalies, which a detector that saturates at 1.0 cannot do.

Detectors: ``RateDetector()`` given ``{"value": v, "t": epoch_s}``;
``RateDetector(seasonality="none")`` (the model without seasonal views, which is what the
class was before seasonal views existed); River's ``anomaly.GaussianScorer()`` and
``anomaly.StandardAbsoluteDeviation()`` with their defaults; and a windowed Gaussian,
``|x - mean| / std`` over the previous day (144 steps) with River's rolling statistics.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
from river import anomaly, stats, utils

from detectors.rate import RateDetector

STEP_S = 600
T0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()  # a Monday
MIN_WINDOW = 12
PROBATION = 0.15
PROFILES = {"standard": 0.11, "low_fp": 0.22}
SIGMA_MAX = 2.0 / (1.0 + math.exp(-5.0)) - 1.0
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "servegen" / "m-large"


@dataclass
class Series:
    name: str
    family: str
    t: np.ndarray
    x: np.ndarray
    windows: list[tuple[int, int]] = field(default_factory=list)


# ---------------------------------------------------------------- corpus


def _free_slot(rng: np.random.Generator, n: int, dur: int, taken: list[tuple[int, int]]) -> int:
    # An onset after the first 20 % whose label window clears every other window by a day.
    span = max(dur, MIN_WINDOW)
    for _ in range(1000):
        a = int(rng.integers(int(0.2 * n), n - span - 1))
        if all(a + span + 144 < lo or a > hi + 144 for lo, hi in taken):
            return a
    raise RuntimeError("no room for another anomaly")


def _label(s: Series, a: int, dur: int) -> None:
    s.windows.append((a, a + max(dur, MIN_WINDOW) - 1))
    s.windows.sort()


def _times(n: int) -> np.ndarray:
    return T0 + STEP_S * np.arange(n, dtype=float)


def _daily_phase(t: np.ndarray) -> np.ndarray:
    return 2 * np.pi * ((t - T0) % 86_400) / 86_400


def _gen_daily(rng: np.random.Generator, n: int, k: int) -> Series:
    t = _times(n)
    sd = rng.uniform(3, 8)
    x = 200 + rng.uniform(40, 90) * np.sin(_daily_phase(t)) + rng.normal(0, sd, n)
    s = Series(f"daily-{k}", "daily", t, x)
    for mult in (4.0, 7.0, 12.0, -8.0):
        dur = int(rng.integers(1, 4))
        a = _free_slot(rng, n, dur, s.windows)
        x[a : a + dur] += mult * sd
        _label(s, a, dur)
    return s


def _gen_weekly(rng: np.random.Generator, n: int, k: int) -> Series:
    t = _times(n)
    hour = ((t - T0) % 86_400) / 3600
    dow = ((t - T0) // 86_400) % 7
    busy = (hour >= 9) & (hour < 18) & (dow < 5)
    base, peak = rng.uniform(20, 40), rng.uniform(150, 300)
    sd = rng.uniform(4, 8)
    x = np.where(busy, peak, base) + rng.normal(0, sd, n)
    s = Series(f"weekly-{k}", "weekly", t, x)
    # A weekday-sized burst on a Sunday afternoon: ordinary for a Tuesday, not for a Sunday.
    sundays = np.flatnonzero((dow == 6) & (hour >= 13) & (hour < 14) & (np.arange(n) > 0.3 * n))
    a = int(sundays[(k * 6) % len(sundays)])
    dur = 18
    x[a : a + dur] = peak + rng.normal(0, sd, dur)
    _label(s, a, dur)
    a = _free_slot(rng, n, 1, s.windows)
    x[a] += 10 * sd
    _label(s, a, 1)
    return s


def _gen_shift(rng: np.random.Generator, n: int, k: int) -> Series:
    t = _times(n)
    sd = rng.uniform(2, 5)
    level = np.full(n, 100.0)
    s = Series(f"shift-{k}", "shift", t, level)
    for mult in (6.0, -5.0, 8.0):
        a = _free_slot(rng, n, MIN_WINDOW, s.windows)
        level[a:] += mult * sd
        _label(s, a, MIN_WINDOW)
    s.x = level + rng.normal(0, sd, n)
    return s


def _gen_trend(rng: np.random.Generator, n: int, k: int) -> Series:
    t = _times(n)
    sd = rng.uniform(3, 6)
    x = 50 + rng.uniform(0.02, 0.08) * np.arange(n) + 30 * np.sin(_daily_phase(t))
    x += rng.normal(0, sd, n)
    s = Series(f"trend-{k}", "trend", t, x)
    for mult in (6.0, 10.0):
        a = _free_slot(rng, n, 1, s.windows)
        x[a] += mult * sd
        _label(s, a, 1)
    a = _free_slot(rng, n, 36, s.windows)
    x[a : a + 36] += np.linspace(0, 12 * sd, 36)
    _label(s, a, 36)
    return s


def _gen_heavy(rng: np.random.Generator, n: int, k: int) -> Series:
    t = _times(n)
    scale = rng.uniform(3, 6)
    x = 300 + 60 * np.sin(_daily_phase(t)) + scale * rng.standard_t(3, n)
    s = Series(f"heavy-{k}", "heavy", t, x)
    for mult in (15.0, 25.0, 40.0):
        a = _free_slot(rng, n, 1, s.windows)
        x[a] += mult * scale
        _label(s, a, 1)
    a = _free_slot(rng, n, MIN_WINDOW, s.windows)
    x[a:] += 12 * scale
    _label(s, a, MIN_WINDOW)
    return s


def _gen_counts(rng: np.random.Generator, n: int, k: int) -> Series:
    t = _times(n)
    mean = rng.uniform(0.5, 3.0)
    lam = mean * (1 + 0.6 * np.sin(_daily_phase(t)))
    s = Series(f"counts-{k}", "counts", t, lam)
    for _ in range(3):
        dur = int(rng.integers(6, 19))
        a = _free_slot(rng, n, dur, s.windows)
        lam[a : a + dur] *= rng.uniform(3, 6)
        _label(s, a, dur)
    s.x = rng.poisson(lam).astype(float)
    return s


def _load_real(data: Path, clients: int) -> list[tuple[str, np.ndarray]]:
    # The busiest clients that are never idle: requests per 10-minute window.
    out = []
    for f in sorted(data.glob("chunk-*-trace.csv")):
        a = np.genfromtxt(f, delimiter=",", usecols=(0, 1))
        if a.ndim == 2 and len(a) >= 1000 and (a[:, 1] > 0).all():
            out.append((f.name.split("-")[1], np.round(a[:, 1] * STEP_S)))
    out.sort(key=lambda kv: -float(kv[1].mean()))
    return out[:clients]


def _gen_real(rng: np.random.Generator, client: str, counts: np.ndarray) -> Series:
    n = len(counts)
    x = counts.astype(float).copy()
    s = Series(f"real-{client}", "real", _times(n), x)
    kinds = ["spike", "burst", "drop", "shift"]
    for kind in rng.choice(kinds, size=3, replace=False):
        dur = {"spike": 1, "burst": 12, "drop": 6, "shift": MIN_WINDOW}[kind]
        a = _free_slot(rng, n, dur, s.windows)
        if kind == "spike":
            x[a] *= rng.uniform(2.5, 4.0)
        elif kind == "burst":
            x[a : a + dur] *= 2.0
        elif kind == "drop":
            x[a : a + dur] = np.round(0.1 * x[a : a + dur])
        else:
            x[a:] = np.round(1.6 * x[a:])
        _label(s, a, dur)
    return s


GENERATORS: dict[str, Callable[[np.random.Generator, int, int], Series]] = {
    "daily": _gen_daily,
    "weekly": _gen_weekly,
    "shift": _gen_shift,
    "trend": _gen_trend,
    "heavy": _gen_heavy,
    "counts": _gen_counts,
}


def build_corpus(seed: int, days: int, per_family: int, data: Path | None) -> list[Series]:
    n = days * 144
    corpus = []
    for fi, gen in enumerate(GENERATORS.values()):
        for k in range(per_family):
            corpus.append(gen(np.random.default_rng([seed, fi, k]), n, k))
    if data is not None and data.is_dir():
        for ci, (client, counts) in enumerate(_load_real(data, 6)):
            corpus.append(_gen_real(np.random.default_rng([seed, 99, ci]), client, counts))
    return corpus


# ---------------------------------------------------------------- detectors


class WindowedGaussian:
    """|z| of the value against the mean and standard deviation of the previous ``w`` values."""

    def __init__(self, window: int = 144) -> None:
        self.mean = utils.Rolling(stats.Mean, window_size=window)
        self.var = utils.Rolling(stats.Var, window_size=window)

    def score(self, v: float) -> float:
        if self.mean.window is None or len(self.mean.window) < 10:  # type: ignore[attr-defined]
            return 0.0
        sd = math.sqrt(max(self.var.get() or 0.0, 0.0))
        return abs(v - self.mean.get()) / (sd + 1e-9)

    def learn(self, v: float) -> None:
        self.mean.update(v)
        self.var.update(v)


def _run_rate(s: Series, **kw: object) -> np.ndarray:
    det = RateDetector(**kw)  # type: ignore[arg-type]
    out = np.empty(len(s.x))
    for i, (v, t) in enumerate(zip(s.x.tolist(), s.t.tolist(), strict=True)):
        x = {"value": v, "t": t}
        out[i] = det.score_one(x)
        det.learn_one(x)
    return out


def _run_supervised(s: Series, det: anomaly.base.SupervisedAnomalyDetector) -> np.ndarray:
    out = np.empty(len(s.x))
    for i, v in enumerate(s.x.tolist()):
        out[i] = det.score_one(None, v)
        det.learn_one(None, v)
    return out


def _run_windowed(s: Series) -> np.ndarray:
    det = WindowedGaussian()
    out = np.empty(len(s.x))
    for i, v in enumerate(s.x.tolist()):
        out[i] = det.score(v)
        det.learn(v)
    return out


DETECTORS: dict[str, Callable[[Series], np.ndarray]] = {
    "RateDetector": lambda s: _run_rate(s),
    "RateDetector(seasonality=none)": lambda s: _run_rate(s, seasonality="none"),
    "GaussianScorer": lambda s: _run_supervised(s, anomaly.GaussianScorer()),
    "StandardAbsoluteDeviation": lambda s: _run_supervised(s, anomaly.StandardAbsoluteDeviation()),
    "WindowedGaussian(1 day)": _run_windowed,
}


# ---------------------------------------------------------------- scoring


def _sigma(i: int, a: int, b: int) -> float:
    r = (i - a) / (b - a + 1)
    return 2.0 / (1.0 + math.exp(5.0 * (r - 1.0))) - 1.0


def score_series(s: Series, scores: np.ndarray, theta: float, a_fp: float) -> float:
    """Raw NAB-like score of one series at threshold ``theta`` (see the module docstring)."""
    start = int(PROBATION * len(scores))
    hits = np.flatnonzero(scores[start:] >= theta) + start
    total = 0.0
    inside = np.zeros(len(hits), dtype=bool)
    for a, b in s.windows:
        lo, hi = np.searchsorted(hits, a), np.searchsorted(hits, b, side="right")
        inside[lo:hi] = True
        total += _sigma(int(hits[lo]), a, b) if hi > lo else -1.0
    return total - a_fp * float((~inside).sum())


def normalised(raw: float, windows: int) -> float:
    null, perfect = -float(windows), SIGMA_MAX * windows
    return 100.0 * (raw - null) / (perfect - null)


def rank_auc(corpus: list[Series], scores: list[np.ndarray]) -> float:
    """P(a window's max score > a random outside step's score), ties half."""
    tops, outside = [], []
    for s, sc in zip(corpus, scores, strict=True):
        mask = np.ones(len(sc), dtype=bool)
        mask[: int(PROBATION * len(sc))] = False
        for a, b in s.windows:
            tops.append(float(sc[a : b + 1].max()))
            mask[a : b + 1] = False
        outside.append(sc[mask])
    out = np.sort(np.concatenate(outside))
    wins = sum(
        np.searchsorted(out, v, side="left")
        + 0.5 * (np.searchsorted(out, v, side="right") - np.searchsorted(out, v, side="left"))
        for v in tops
    )
    return float(wins) / (len(tops) * len(out))


def _thresholds(scores: list[np.ndarray]) -> np.ndarray:
    pooled = np.concatenate([sc[int(PROBATION * len(sc)) :] for sc in scores])
    qs = 1.0 - np.logspace(-0.3, -5.0, 120)
    cand = np.unique(np.quantile(pooled, qs))
    return cand[cand > 0] if (cand > 0).any() else cand


def evaluate(corpus: list[Series], scores: list[np.ndarray]) -> dict[str, object]:
    families = sorted({s.family for s in corpus}, key=[*GENERATORS, "real"].index)
    res: dict[str, object] = {"rank_auc": round(rank_auc(corpus, scores), 4)}
    n_win = sum(len(s.windows) for s in corpus)
    for prof, a_fp in PROFILES.items():
        best_theta, best = 0.0, -math.inf
        for theta in _thresholds(scores):
            raw = sum(
                score_series(s, sc, theta, a_fp) for s, sc in zip(corpus, scores, strict=True)
            )
            total = normalised(raw, n_win)
            if total > best:
                best_theta, best = float(theta), total
        fam_scores = {}
        for fam in families:
            pairs = [(s, sc) for s, sc in zip(corpus, scores, strict=True) if s.family == fam]
            raw = sum(score_series(s, sc, best_theta, a_fp) for s, sc in pairs)
            fam_scores[fam] = round(normalised(raw, sum(len(s.windows) for s, _ in pairs)), 1)
        res[prof] = {"total": round(best, 1), "threshold": best_theta, "families": fam_scores}
    return res


# ---------------------------------------------------------------- main


def _rows(results: dict[str, dict[str, object]]) -> Iterator[str]:
    first = next(iter(results.values()))
    fams = list(first["standard"]["families"])  # type: ignore[index]
    head = f"{'detector':<32}" + "".join(f"{f:>8}" for f in fams)
    yield head + f"{'total':>8}{'low_fp':>8}{'rankAUC':>9}"
    for name, r in results.items():
        std, low = r["standard"], r["low_fp"]
        cells = "".join(f"{std['families'][f]:>8.1f}" for f in fams)  # type: ignore[index]
        yield f"{name:<32}{cells}{std['total']:>8.1f}{low['total']:>8.1f}{r['rank_auc']:>9.3f}"  # type: ignore[index]


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--per-family", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ServeGen m-large dir")
    ap.add_argument("--no-real", action="store_true", help="synthetic series only")
    args = ap.parse_args(argv)
    corpus = build_corpus(
        args.seed, args.days, args.per_family, None if args.no_real else args.data
    )
    n_win = sum(len(s.windows) for s in corpus)
    print(f"{len(corpus)} series, {sum(len(s.x) for s in corpus)} values, {n_win} anomaly windows")
    results: dict[str, dict[str, object]] = {}
    timing = {}
    for name, run in DETECTORS.items():
        t0 = time.perf_counter()
        scores = [run(s) for s in corpus]
        timing[name] = round(time.perf_counter() - t0, 2)
        results[name] = evaluate(corpus, scores)
    print("normalised NAB-like score per family (standard profile), totals, threshold-free AUC")
    for row in _rows(results):
        print(row)
    out = {
        "seed": args.seed,
        "days": args.days,
        "series": len(corpus),
        "windows": n_win,
        "families": sorted({s.family for s in corpus}),
        "results": results,
        "seconds": timing,
        "python": platform.python_version(),
    }
    print("BENCH " + orjson.dumps(out).decode(), flush=True)
    return out


if __name__ == "__main__":
    main()
