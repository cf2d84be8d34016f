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
series and millions of accounts at a few dozen bytes each.

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
from collections.abc import MutableSequence
from dataclasses import dataclass
from typing import Any, Final

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


class RateDetector:
    """River-style anomaly detector for one rate series: ``learn_one`` / ``score_one`` on
    ``{"value": x}``; the score is in ``[0, 1)`` and 0 during warm-up.

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
    ) -> None:
        if transform not in ("asinh", "none"):
            raise ValueError(f"transform must be 'asinh' or 'none', got {transform!r}")
        self.transform = transform
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
        params = self._get_params()
        del params["transform"]
        self._params = RateParams(**params)
        self._state: list[float] = [0.0] * STATE_SIZE
        self._state[_OLD] = math.nan

    def _value(self, x: dict[str, Any]) -> float | None:
        v = float(x["value"])
        if not math.isfinite(v):
            return None
        return math.asinh(v) if self.transform == "asinh" else v

    def learn_one(self, x: dict[str, Any]) -> None:
        v = self._value(x)
        if v is not None:
            rate_learn(self._state, self._params, v)

    def score_one(self, x: dict[str, Any]) -> float:
        v = self._value(x)
        return 0.0 if v is None else rate_score(self._state, self._params, v)

    def z_one(self, x: dict[str, Any]) -> float:
        """The signed robust z behind :meth:`score_one` (for evidence)."""
        v = self._value(x)
        return 0.0 if v is None else rate_z(self._state, self._params, v)

    @property
    def mean(self) -> float:
        """The fast level (the value the detector expects next), in the series' units."""
        lv = self._state[_LEVEL]
        return math.sinh(lv) if self.transform == "asinh" else lv

    @property
    def n_seen(self) -> int:
        return int(self._state[_N])

    def clone(self) -> RateDetector:
        """A fresh detector with the same hyper-parameters (River's ``clone``)."""
        return RateDetector(**self._get_params())

    def _get_params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "scale_alpha": self.scale_alpha,
            "slow_alpha": self.slow_alpha,
            "grace_period": self.grace_period,
            "clip_z": self.clip_z,
            "shift_run": self.shift_run,
            "half_z": self.half_z,
            "two_sided": self.two_sided,
            "min_std": self.min_std,
            "rel_std": self.rel_std,
            "slow_weight": self.slow_weight,
            "transform": self.transform,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._get_params().items())
        return f"RateDetector({args})"
