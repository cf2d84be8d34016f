"""Population models: what an account's peers (same tier) look like, per feature.

One :class:`PopulationModel` per population holds a decayed histogram per feature over the
log scale, so robust quantiles (median, quartiles, tails) cost a walk over ~80 bins and the
whole model is a few kilobytes, however many accounts it summarises. It gives three things:

* robust z-scores of an account's feature against its peers (:meth:`robust_z`), the
  population score of :mod:`detectors.account`;
* the cohort prior a brand-new account's baseline starts from (:meth:`prior`);
* nothing per account: heavy state lives here, once per tier.

Examples
--------
>>> pop = PopulationModel(half_life=1000)
>>> for v in range(1, 101):
...     pop.learn("log_requests", math.log1p(v % 10 + 1))
>>> round(pop.quantile("log_requests", 0.5), 1)
1.8
>>> pop.robust_z("log_requests", math.log1p(500)) > 5
True
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["PopulationModel"]

_BIN_WIDTH: Final = 0.125
_N_BINS: Final = 192  # covers log values in [0, 24): up to e^24 tokens
_IQR_TO_STD: Final = 1.349


class PopulationModel:
    """Decayed log-scale histograms of a few features across one population.

    Parameters
    ----------
    half_life
        Observations after which an old observation weighs half; the population's notion of
        normal follows launches and seasons at this pace.
    min_weight
        Total weight a feature needs before it gives quantiles (before that: no opinion).
    """

    def __init__(self, half_life: float = 20_000.0, min_weight: float = 50.0) -> None:
        self.half_life = half_life
        self.min_weight = min_weight
        self._hist: dict[str, list[float]] = {}
        self._weight: dict[str, float] = {}
        self._grow = 2.0 ** (1.0 / half_life)
        # Instead of decaying every bin on every update, new observations weigh more and
        # more (w *= grow); totals are rescaled when they grow large.
        self._unit = 1.0

    def learn(self, feature: str, value: float) -> None:
        """Add one observation of ``feature`` (already on a log scale, >= 0)."""
        hist = self._hist.get(feature)
        if hist is None:
            hist = self._hist[feature] = [0.0] * _N_BINS
            self._weight[feature] = 0.0
        i = min(_N_BINS - 1, max(0, int(value / _BIN_WIDTH)))
        hist[i] += self._unit
        self._weight[feature] += self._unit
        self._unit *= self._grow
        if self._unit > 1e12:
            for name, h in self._hist.items():
                self._hist[name] = [c / self._unit for c in h]
                self._weight[name] /= self._unit
            self._unit = 1.0

    def weight(self, feature: str) -> float:
        """Effective number of observations (in units of the newest one)."""
        return self._weight.get(feature, 0.0) / self._unit

    def quantile(self, feature: str, q: float) -> float:
        """The ``q`` quantile of ``feature``; NaN while the population is too small."""
        hist = self._hist.get(feature)
        if hist is None or self.weight(feature) < self.min_weight:
            return math.nan
        target = q * self._weight[feature]
        acc = 0.0
        for i, c in enumerate(hist):
            if c > 0 and acc + c >= target:
                return (i + (target - acc) / c) * _BIN_WIDTH
            acc += c
        return _N_BINS * _BIN_WIDTH

    def robust_z(self, feature: str, value: float) -> float:
        """(value - median) / (IQR / 1.349), floored at one bin width; 0 without data."""
        med = self.quantile(feature, 0.5)
        if math.isnan(med):
            return 0.0
        iqr = self.quantile(feature, 0.75) - self.quantile(feature, 0.25)
        return (value - med) / max(iqr / _IQR_TO_STD, 2 * _BIN_WIDTH)

    def prior(self, feature: str) -> tuple[float, float] | None:
        """(median, robust std) of ``feature`` for a new member's baseline, or None."""
        med = self.quantile(feature, 0.5)
        if math.isnan(med):
            return None
        iqr = self.quantile(feature, 0.75) - self.quantile(feature, 0.25)
        return med, max(iqr / _IQR_TO_STD, 2 * _BIN_WIDTH)
