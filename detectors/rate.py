"""A univariate anomaly detector for rate series (requests, tokens, ... per window).

The model predicts the next value with two exponentially weighted levels — a fast one that
follows daily cycles and slow drifts, and a slow one that remembers the series' usual range —
and measures the surprise as a robust z (residual over an exponentially weighted mean
absolute deviation, floored so flat and quantised series stay calm). The score maps that z
into ``[0, 1)``: about 0 for ordinary noise, 0.5 at ``z == half_z``, approaching but never
reaching 1. Learning clips large residuals (Huber style), so a spike does not drag the
level; a run of ``shift_run`` same-sided outliers is accepted as a level shift and the
levels jump to it, so a shift is scored high at its onset and quiet afterwards.

The state is nine floats held in any mutable sequence (an ``array('d')`` slice for the
per-account baselines, a list inside :class:`RateDetector`), so the same code serves one
series and millions of accounts at a few dozen bytes each. Those functions are frozen: the
account baselines and every evaluation number depend on them.

:class:`RateDetector` is the public, single-series face of that core: a River
``AnomalyDetector`` (it passes River's estimator checks) that, when values carry a
timestamp, also runs the core on the value minus a learned daily or weekly shape and scores
with whichever view the series shows to predict best (``bench/univariate.py`` measures it).

Examples
--------
>>> det = RateDetector(grace_period=5)
>>> for v in [10, 11, 9, 10, 12, 10, 11, 9, 10, 11]:
...     det.learn_one({"value": v})
>>> det.score_one({"value": 10}) < 0.05
True
>>> det.score_one({"value": 60}) > 0.9
True
>>> flat = RateDetector()
>>> for _ in range(100):
...     flat.learn_one({"value": 3.0})
>>> flat.score_one({"value": 3.0})
0.0
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, MutableSequence
from dataclasses import dataclass
from typing import Any, Final

from river.base import AnomalyDetector

__all__ = [
    "OLD_LEVEL",
    "STATE_SIZE",
    "RateDetector",
    "RateParams",
    "rate_learn",
    "rate_score",
    "rate_z",
    "z_to_score",
]

#: Floats of state per series.
STATE_SIZE: Final = 12
# Offsets into the state.
(
    _N,
    _LEVEL,
    _SCALE,
    _SLOW,
    _SLOW_SCALE,
    _QUANTUM,
    _PREV,
    _RUN_N,
    _RUN_SUM,
    _TAIL,
    _OLD,
    _SHIFT_AT,
) = range(STATE_SIZE)
# |z| that Gaussian noise exceeds 1 % of the time; a heavier tail widens the scale.
_GAUSS_Q99: Final = 2.576
# Mean absolute deviation -> standard deviation for Gaussian noise.
_MAD_TO_STD: Final = 1.2533
_MAX_Z: Final = 1e4
#: Offset of the "level before the last shift" slot (NaN when there is none).
OLD_LEVEL: Final = _OLD
# Values after a level shift during which a return to the previous regime is a known state.
_RECALL: Final = 200


@dataclass(frozen=True, slots=True)
class RateParams:
    """Hyper-parameters shared by every series of one kind (see :class:`RateDetector`)."""

    alpha: float = 0.15
    scale_alpha: float = 0.05
    slow_alpha: float = 0.01
    grace_period: int = 20
    clip_z: float = 4.0
    shift_run: int = 4
    half_z: float = 5.0
    two_sided: bool = True
    min_std: float = 0.0
    rel_std: float = 0.01
    slow_weight: float = 0.8

    def __post_init__(self) -> None:
        for name in ("alpha", "scale_alpha", "slow_alpha"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {v}")
        if self.grace_period < 1:
            raise ValueError(f"grace_period must be >= 1, got {self.grace_period}")
        if self.shift_run < 1:
            raise ValueError(f"shift_run must be >= 1, got {self.shift_run}")
        if self.clip_z <= 0 or self.half_z <= 0:
            raise ValueError(f"clip_z and half_z must be > 0, got {self.clip_z}, {self.half_z}")
        if self.min_std < 0 or self.rel_std < 0:
            raise ValueError(f"min_std, rel_std must be >= 0, got {self.min_std}, {self.rel_std}")


def _floor(p: RateParams, level: float, quantum: float) -> float:
    # The smallest believable standard deviation: an absolute floor, a share of the level,
    # and the series' typical non-zero step (its quantum: counts move by whole units).
    lv = abs(level)
    f = p.min_std
    if p.rel_std * lv > f:
        f = p.rel_std * lv
    if quantum > f:
        f = quantum
    tiny = 1e-9 * lv if lv > 1.0 else 1e-9
    return f if f > tiny else tiny


def _near_old(
    x: float, old: float, level: float, scale: float, p: RateParams, quantum: float
) -> bool:
    # Within two standard deviations of the previous regime, and far from the current one.
    std = _MAD_TO_STD * scale
    fl = _floor(p, level, quantum)
    std = std if std > fl else fl
    return abs(x - old) <= 2.0 * std < abs(old - level)


def rate_z(s: MutableSequence[float], p: RateParams, x: float, off: int = 0) -> float:
    """Signed robust z of ``x`` (the larger of the fast and the down-weighted slow view);
    0 before ``grace_period`` values. One-sided params give 0 below the level.

    ``off`` is where the series' :data:`STATE_SIZE` floats start in ``s``."""
    if s[off + _N] < p.grace_period:
        return 0.0
    level = s[off + _LEVEL]
    slow = s[off + _SLOW]
    if not p.two_sided and x <= level and x <= slow:
        return 0.0
    quantum = s[off + _QUANTUM]
    old = s[off + _OLD]
    if (
        old == old
        and s[off + _N] - s[off + _SHIFT_AT] <= _RECALL
        and _near_old(x, old, level, s[off + _SCALE], p, quantum)
    ):
        # Back to the regime before the last level shift: a known state, not a surprise
        # (an on/off client, a batch job that ended).
        return 0.0
    # Heavy-tailed noise makes big |z| common; scale z down by how much heavier the series'
    # own 99th percentile of |z| is than Gaussian noise's.
    tail = s[off + _TAIL] / _GAUSS_Q99
    if tail < 1.0:
        tail = 1.0
    std = _MAD_TO_STD * s[off + _SCALE]
    fl = _floor(p, level, quantum)
    zf = (x - level) / ((std if std > fl else fl) * tail)
    std = _MAD_TO_STD * s[off + _SLOW_SCALE]
    fl = _floor(p, slow, quantum)
    zs = p.slow_weight * (x - slow) / ((std if std > fl else fl) * tail)
    # Both views must agree on the side: a value above the fast level but below the usual
    # range is a recovery, not an anomaly.
    if zf > 0 and zs > 0:
        z = min(max(zf, zs), _MAX_Z)
    elif zf < 0 and zs < 0:
        z = max(min(zf, zs), -_MAX_Z)
    else:
        z = zf if abs(zf) < abs(zs) else zs
    if not p.two_sided and z < 0:
        return 0.0
    return z


def z_to_score(z: float, half_z: float) -> float:
    """Map ``|z|`` to ``[0, 1)``: 0.5 at ``half_z``, cubic near 0 so noise stays near 0.

    >>> round(z_to_score(5.0, 5.0), 3), z_to_score(0.0, 5.0), z_to_score(1e4, 5.0) < 1.0
    (0.5, 0.0, True)
    """
    r = (abs(z) / half_z) ** 3
    return r / (1.0 + r)


def rate_score(s: MutableSequence[float], p: RateParams, x: float, off: int = 0) -> float:
    """Anomaly score in ``[0, 1)`` of ``x`` against the state ``s`` (read-only)."""
    return z_to_score(rate_z(s, p, x, off), p.half_z)


def rate_learn(s: MutableSequence[float], p: RateParams, x: float, off: int = 0) -> None:
    """Fold ``x`` into the state ``s[off:off + STATE_SIZE]`` (in place)."""
    n = s[off + _N] + 1.0
    s[off + _N] = n
    if n == 1.0:
        s[off + _LEVEL] = s[off + _SLOW] = s[off + _PREV] = x
        s[off + _OLD] = math.nan
        return
    step = abs(x - s[off + _PREV])
    s[off + _PREV] = x
    inv = 1.0 / n
    a = p.alpha if p.alpha > inv else inv
    level = s[off + _LEVEL]
    scale = s[off + _SCALE]
    quantum = s[off + _QUANTUM]
    r = x - level
    warm = n > 5
    std = _MAD_TO_STD * scale
    fl = _floor(p, level, quantum)
    if fl > std:
        std = fl
    tail = s[off + _TAIL]
    limit = p.clip_z * std * (tail / _GAUSS_Q99 if tail > _GAUSS_Q99 else 1.0)
    run = s[off + _RUN_N]
    old = s[off + _OLD]
    if (
        warm
        and old == old
        and n - s[off + _SHIFT_AT] <= _RECALL
        and abs(r) > limit
        and _near_old(x, old, level, scale, p, quantum)
    ):
        # Returning to the previous regime: jump back at once (and remember this one).
        s[off + _OLD] = level
        s[off + _SHIFT_AT] = n
        s[off + _LEVEL] = s[off + _SLOW] = x
        s[off + _RUN_N] = s[off + _RUN_SUM] = 0.0
        return
    if warm:
        # Stochastic-gradient estimate of the 99th percentile of |z|.
        q = tail or _GAUSS_Q99
        s[off + _TAIL] = q + (0.0495 if abs(r) > q * std else -0.0005)
        if abs(r) > limit:
            sign = 1.0 if r > 0 else -1.0
            if run * sign > 0:
                run += sign
                s[off + _RUN_SUM] += x
            else:
                if run:
                    _release_run(s, p, a, limit, off)
                run = sign
                s[off + _RUN_SUM] = x
            if abs(run) >= p.shift_run:
                # A sustained shift: jump both levels to the new regime instead of crawling.
                s[off + _OLD] = level
                s[off + _SHIFT_AT] = n
                s[off + _LEVEL] = s[off + _SLOW] = s[off + _RUN_SUM] / abs(run)
                s[off + _RUN_N] = s[off + _RUN_SUM] = 0.0
            else:
                s[off + _RUN_N] = run
            # Outliers are held (not learned) until we know whether they start a shift.
            return
    if run:
        _release_run(s, p, a, limit, off)
        level = s[off + _LEVEL]
        scale = s[off + _SCALE]
        r = x - level
    if step > 0.0:
        # Track the typical step from below (only ordinary values: a jump is no quantum).
        # Multiplicative quantile update: q settles where 20 % of non-zero steps are smaller.
        s[off + _QUANTUM] = step if quantum == 0.0 else quantum * (1.01 if step > quantum else 0.96)
    s[off + _LEVEL] = level + a * r
    a_scale = p.scale_alpha if p.scale_alpha > inv else inv
    s[off + _SCALE] = scale + a_scale * (abs(r) - scale)
    slow = s[off + _SLOW]
    slow_scale = s[off + _SLOW_SCALE]
    rs = x - slow
    if warm:
        std = _MAD_TO_STD * slow_scale
        fl = _floor(p, slow, s[off + _QUANTUM])
        slow_limit = p.clip_z * (std if std > fl else fl)
        if rs > slow_limit:
            rs = slow_limit
        elif rs < -slow_limit:
            rs = -slow_limit
    a_slow = p.slow_alpha if p.slow_alpha > inv else inv
    s[off + _SLOW] = slow + a_slow * rs
    s[off + _SLOW_SCALE] = slow_scale + a_slow * (abs(rs) - slow_scale)


def _release_run(
    s: MutableSequence[float], p: RateParams, a: float, limit: float, off: int
) -> None:
    # The held outliers were not a shift: learn them now, clipped (Huber), so that a noisier
    # regime still widens the scale.
    run = s[off + _RUN_N]
    step = limit if run > 0 else -limit
    for _ in range(int(abs(run))):
        s[off + _LEVEL] += a * step
        s[off + _SCALE] += p.scale_alpha * (limit - s[off + _SCALE])
    s[off + _RUN_N] = s[off + _RUN_SUM] = 0.0


# Periods of the seasonal views, in seconds, and the modes of choosing between them.
_DAY_S: Final = 86_400.0
_WEEK_S: Final = 7 * _DAY_S
_SEASONALITIES: Final = ("auto", "none", "daily", "weekly")
# Weight of the newest clipped error in each view's running error (about 500 values).
_ERR_ALPHA: Final = 0.002
# ... and in its rate of surprises (|z| >= clip_z; about 2,000 values, so that one surprise
# more or less does not decide).
_SURPRISE_ALPHA: Final = 0.0005
# A seasonal view must beat the simpler one's running error by this share to be used.
_SEASON_MARGIN: Final = 0.15
# ... or be at most this much less accurate but surprised (|z| >= clip_z) half as often,
# and at least this many times fewer per value: a profile learned from a few periods is
# noisier than the plain view, yet it stops the cycle's sharp steps from firing.
_SURPRISE_ERR: Final = 1.1
_STEP_GAIN: Final = 0.0015
# A clearly more accurate view may still not be surprised this much more often per value.
_SURPRISE_GAIN: Final = 0.005
# Periods of data a seasonal view needs before it may be chosen.
_MIN_PERIODS: Final = 2.0


class _View:
    """One way of reading the series: the shared core state on ``x - shape(t)``.

    ``period_s == 0`` is the plain view (no shape). A seasonal view's shape, per time slot,
    is the median over the last ``periods`` periods of the slot's mean distance from the
    series' period-scale level ``base`` (an exponential average whose time constant is the
    period, so it cannot follow the cycle itself and does not imprint its own wiggles on the
    shape; measuring against the core's fast level instead would let that level absorb the
    cycle and leave the profile only its lag). The median
    is why an anomaly, a holiday or a shifted day does not become next week's expectation:
    one bad period out of three or more cannot move it, and nothing has to be gated.
    """

    __slots__ = (
        "acc_n",
        "acc_sum",
        "base",
        "err",
        "hist",
        "judged",
        "known",
        "n_known",
        "period",
        "period_s",
        "periods",
        "prof",
        "slot_s",
        "state",
        "surprise",
    )

    def __init__(self, period_s: float, slot_s: float, periods: int) -> None:
        self.period_s = period_s
        self.slot_s = slot_s
        self.periods = periods
        n = round(period_s / slot_s) if period_s else 0
        self.prof: array[float] = array("d", [0.0] * n)
        self.known: array[float] = array("d", [0.0] * n)  # completed periods in hist
        self.hist: array[float] = array("d", [0.0] * (n * periods))
        self.acc_sum: array[float] = array("d", [0.0] * n)
        self.acc_n: array[float] = array("d", [0.0] * n)
        self.period = math.nan
        self.state: list[float] = [0.0] * STATE_SIZE
        self.state[_OLD] = math.nan
        self.err = 0.0
        self.surprise = 0.0
        self.judged = 0
        self.base = 0.0  # sum of the known slots' medians
        self.n_known = 0

    def slot(self, t: float | None) -> int:
        if not self.period_s or t is None:
            return -1
        return int((t % self.period_s) // self.slot_s)

    def shape(self, t: float | None) -> float:
        # A slot's typical value relative to the typical slot: the cycle without the level.
        slot = self.slot(t)
        if slot < 0 or not self.known[slot]:
            return 0.0
        return self.prof[slot] - self.base / self.n_known

    def _close(self, slot: int) -> None:
        # The slot's period is over: its mean joins the history and the median is redone.
        k, m = int(self.known[slot]), self.periods
        self.hist[slot * m + k % m] = self.acc_sum[slot] / self.acc_n[slot]
        k += 1
        self.known[slot] = k
        vals = sorted(self.hist[slot * m : slot * m + min(k, m)])
        h = len(vals) // 2
        # Of two middle values take the one nearer the typical slot: with two periods seen,
        # an anomaly in one of them must not become half the expectation.
        lo, hi = vals[h - 1] if len(vals) % 2 == 0 else vals[h], vals[h]
        if k == 1:
            self.n_known += 1
        else:
            self.base -= self.prof[slot]
        mid = self.base / self.n_known if self.n_known > 1 else lo
        new = lo if abs(lo - mid) < abs(hi - mid) else hi
        self.prof[slot] = new
        self.base += new
        self.acc_sum[slot] = self.acc_n[slot] = 0.0

    def learn(self, p: RateParams, v: float, t: float | None, plain_ok: bool) -> None:
        if t is not None and self.period_s:
            period = t // self.period_s
            if period != self.period:
                # A new period: every slot's mean over the last one joins its history now,
                # so the whole new period is read against a complete profile.
                for k in range(len(self.prof)):
                    if self.acc_n[k]:
                        self._close(k)
                self.period = period
        y = v - self.shape(t)
        s = self.state
        z = rate_z(s, p, y)
        slot = self.slot(t)
        # A seasonal view is only judged where its shape exists: its first period is the
        # plain model plus noise and would count against it for weeks.
        if s[_N] >= 2 and (slot < 0 or self.known[slot]):
            # The view's one-step error, clipped like the core clips residuals so one spike
            # cannot decide which view wins, and how often it is surprised.
            std = _MAD_TO_STD * s[_SCALE]
            fl = _floor(p, s[_LEVEL], s[_QUANTUM])
            lim = p.clip_z * (std if std > fl else fl)
            e = abs(y - s[_LEVEL])
            self.err += _ERR_ALPHA * ((e if e < lim else lim) - self.err)
            self.judged += 1
            hit = 1.0 if abs(z) >= p.clip_z else 0.0
            self.surprise += _SURPRISE_ALPHA * (hit - self.surprise)
        if slot >= 0:
            d = v
            if self.known[slot] and s[_N] >= p.grace_period:
                # Clip what one value can add to its slot (Huber): a heavy-tailed burst
                # would otherwise land in the shape and come back as a false alarm a period
                # later.
                std = _MAD_TO_STD * s[_SCALE]
                fl = _floor(p, s[_LEVEL], s[_QUANTUM])
                lim = p.clip_z * (std if std > fl else fl)
                ref = self.prof[slot]
                d = ref - lim if d < ref - lim else (ref + lim if d > ref + lim else d)
            self.acc_sum[slot] += d
            self.acc_n[slot] += 1.0
        rate_learn(s, p, y)

    def running(self) -> tuple[float, float]:
        """The running error and surprise rate, corrected for starting at zero (views
        start being judged at different times)."""
        n = self.judged
        if not n:
            return math.inf, 1.0
        return (
            self.err / (1.0 - (1.0 - _ERR_ALPHA) ** n),
            self.surprise / (1.0 - (1.0 - _SURPRISE_ALPHA) ** n),
        )

    def z(self, p: RateParams, v: float, t: float | None) -> float:
        return rate_z(self.state, p, v - self.shape(t))


class RateDetector(AnomalyDetector):
    """River anomaly detector for one rate series (``river.base.AnomalyDetector``).

    ``learn_one`` / ``score_one`` take ``{value_key: x}`` and, optionally, the value's time
    in epoch seconds under ``time_key``. The score is in ``[0, 1)``, 0 during warm-up and for
    inputs without a finite value; it grows with the robust z of the value, so scores rank
    anomalies (twice the surprise scores higher) rather than flag them.

    Without timestamps this is the core model of the module (the exact code every account
    baseline runs). With timestamps it also keeps a daily and a weekly view: the same core
    run on the value minus a per-slot shape (``season_slot_s`` wide; the median of the
    slot's last ``season_periods`` period means) learned online. A seasonal view scores once
    it has seen two of its periods and predicts clearly better than the current view (15 %
    lower running one-step error without many more surprises) or about as well with half
    the surprises. A series without a cycle keeps the plain view; a server that is busy
    every weekday afternoon stops surprising it. See docs/detectors.md, "The rate detector".

    Parameters
    ----------
    alpha
        Weight of the newest value in the fast level. Higher follows daily cycles and drifts
        more closely but is noisier.
    scale_alpha
        Weight of the newest residual in the scale (mean absolute deviation); lower is a
        steadier yardstick.
    slow_alpha
        Weight of the newest value in the slow level: the memory of the series' usual range.
    grace_period
        Values to learn before any non-zero score.
    clip_z
        Residuals beyond this many standard deviations are clipped when learning.
    shift_run
        Consecutive same-sided clipped residuals that are accepted as a level shift.
    half_z
        The robust z that scores 0.5.
    two_sided
        Score drops as well as rises. Abuse detection sets False: only rises matter.
    min_std, rel_std
        Absolute and level-relative floors on the standard deviation.
    slow_weight
        Down-weighting of the slow view's z, which is broader by nature.
    transform
        ``"none"`` (default) models ``x`` itself; ``"asinh"`` models ``asinh(x)`` (linear
        near 0, logarithmic for large values), for series whose noise is multiplicative.
    seasonality
        ``"auto"`` (default) picks between the plain, daily and weekly views online;
        ``"none"``, ``"daily"`` or ``"weekly"`` force one (a forced seasonal view is used
        from the first value). Without timestamps only the plain view exists.
    season_periods
        Past periods whose median forms a slot's expected shape (robust to one bad period
        in three; 5 days or weeks by default).
    season_slot_s
        Width of a profile slot in seconds (1,800: 48 slots a day, 336 a week).
    value_key, time_key
        Where the value and its epoch-seconds timestamp are in ``x``.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> det = RateDetector()
    >>> scores = []
    >>> for t in range(600):
    ...     v = 100 + 30 * math.sin(t * 2 * math.pi / 288) + rng.gauss(0, 3)
    ...     v += 80 if t == 500 else 0          # one spike
    ...     scores.append(det.score_one({"value": v}))
    ...     det.learn_one({"value": v})
    >>> max(range(600), key=scores.__getitem__)
    500
    >>> sorted(scores)[-2] < 0.5 < scores[500]
    True
    """

    def __init__(
        self,
        alpha: float = 0.15,
        scale_alpha: float = 0.05,
        slow_alpha: float = 0.01,
        grace_period: int = 20,
        clip_z: float = 4.0,
        shift_run: int = 4,
        half_z: float = 5.0,
        two_sided: bool = True,
        min_std: float = 0.0,
        rel_std: float = 0.01,
        slow_weight: float = 0.8,
        transform: str = "none",
        seasonality: str = "auto",
        season_periods: int = 5,
        season_slot_s: float = 1800.0,
        value_key: str = "value",
        time_key: str = "t",
    ) -> None:
        if transform not in ("asinh", "none"):
            raise ValueError(f"transform must be 'asinh' or 'none', got {transform!r}")
        if seasonality not in _SEASONALITIES:
            raise ValueError(f"seasonality must be one of {_SEASONALITIES}, got {seasonality!r}")
        if season_periods < 1:
            raise ValueError(f"season_periods must be >= 1, got {season_periods}")
        if not 0.0 < season_slot_s <= _DAY_S or _DAY_S % season_slot_s:
            raise ValueError(f"season_slot_s must divide a day, got {season_slot_s}")
        self.alpha = alpha
        self.scale_alpha = scale_alpha
        self.slow_alpha = slow_alpha
        self.grace_period = grace_period
        self.clip_z = clip_z
        self.shift_run = shift_run
        self.half_z = half_z
        self.two_sided = two_sided
        self.min_std = min_std
        self.rel_std = rel_std
        self.slow_weight = slow_weight
        self.transform = transform
        self.seasonality = seasonality
        self.season_periods = season_periods
        self.season_slot_s = season_slot_s
        self.value_key = value_key
        self.time_key = time_key
        self._params = RateParams(
            alpha=alpha,
            scale_alpha=scale_alpha,
            slow_alpha=slow_alpha,
            grace_period=grace_period,
            clip_z=clip_z,
            shift_run=shift_run,
            half_z=half_z,
            two_sided=two_sided,
            min_std=min_std,
            rel_std=rel_std,
            slow_weight=slow_weight,
        )
        plain = _View(0.0, season_slot_s, season_periods)
        daily = _View(_DAY_S, season_slot_s, season_periods)
        weekly = _View(_WEEK_S, season_slot_s, season_periods)
        # The plain view comes first in every mode: it referees what the profiles learn.
        self._views = {
            "auto": [plain, daily, weekly],
            "none": [plain],
            "daily": [plain, daily],
            "weekly": [plain, weekly],
        }[seasonality]
        self._active = 0 if seasonality in ("auto", "none") else 1
        self._t0: float | None = None
        self._t_last: float | None = None

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"seasonality": "none", "transform": "asinh"}

    def _read(self, x: dict[str, Any]) -> tuple[float | None, float | None]:
        # A missing or non-finite value is no observation; a missing time is a plain value.
        raw = x.get(self.value_key)
        try:
            v = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None, None
        if not math.isfinite(v):
            return None, None
        t = x.get(self.time_key)
        try:
            ts = float(t) if t is not None else None
        except (TypeError, ValueError):
            ts = None
        if ts is not None and not math.isfinite(ts):
            ts = None
        return (math.asinh(v) if self.transform == "asinh" else v), ts

    def _view(self) -> _View:
        return self._views[self._active]

    def learn_one(self, x: dict[str, Any]) -> None:
        v, t = self._read(x)
        if v is None:
            return
        p = self._params
        first = self._views[0]
        plain_ok = not first.period_s and abs(first.z(p, v, None)) < p.clip_z
        # Longer cycles first: the weekly view reads the daily shape before it learns this value.
        for view in sorted(self._views, key=lambda w: -w.period_s):
            if t is None and view.period_s and self.seasonality == "auto":
                continue  # an untimed value says nothing about the cycle
            view.learn(p, v, t, plain_ok)
        if t is not None:
            if self._t0 is None:
                self._t0 = t
            self._t_last = t
        if self.seasonality == "auto":
            self._choose()

    def _choose(self) -> None:
        # The simplest view wins unless a longer cycle has been seen twice and clearly
        # predicts better: a seasonal profile fitted to noise must not be trusted.
        span = (self._t_last - self._t0) if self._t0 is not None and self._t_last else 0.0
        best = 0
        for k in range(1, len(self._views)):
            view, cur = self._views[k], self._views[best]
            if span < _MIN_PERIODS * view.period_s or view.judged < 1.0 / _ERR_ALPHA:
                continue
            v_err, v_sur = view.running()
            c_err, c_sur = cur.running()
            # Clearly more accurate without being surprised much more often (a tight view of
            # heavy-tailed noise is), or nearly as accurate and far less often surprised (a
            # cycle of sharp steps, which the plain view meets as a level shift every morning).
            if (
                v_err < (1.0 - _SEASON_MARGIN) * c_err and v_sur <= 2.0 * c_sur + _SURPRISE_GAIN
            ) or (
                v_err < _SURPRISE_ERR * c_err and v_sur < 0.5 * c_sur and c_sur - v_sur > _STEP_GAIN
            ):
                best = k
        self._active = best

    def score_one(self, x: dict[str, Any]) -> float:
        return z_to_score(self.z_one(x), self.half_z)

    def z_one(self, x: dict[str, Any]) -> float:
        """The signed robust z behind :meth:`score_one` (for evidence)."""
        v, t = self._read(x)
        if v is None:
            return 0.0
        return self._view().z(self._params, v, t)

    @property
    def seasonal_view(self) -> str:
        """The view scoring now: ``"none"``, ``"daily"`` or ``"weekly"``."""
        period = self._view().period_s
        return "none" if not period else ("daily" if period == _DAY_S else "weekly")

    @property
    def mean(self) -> float:
        """The plain view's fast level (the value it expects next), in the series' units."""
        lv = self._views[0].state[_LEVEL]
        return math.sinh(lv) if self.transform == "asinh" else lv

    @property
    def n_seen(self) -> int:
        return int(self._views[0].state[_N])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._get_params().items())
        return f"RateDetector({args})"
