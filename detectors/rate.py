"""A univariate anomaly detector for rate series (requests, tokens, ... per window).

Examples
--------
>>> det = RateDetector(grace_period=5)
>>> for v in [10, 11, 9, 10, 12, 10, 11, 9, 10, 11]:
...     det.learn_one({"value": v})
>>> det.score_one({"value": 10}) < 1.0
True
>>> det.score_one({"value": 60}) > 5.0
True
"""

from __future__ import annotations

import math
from typing import Any

from river import stats

__all__ = ["RateDetector"]


class RateDetector:
    """Exponentially weighted z-score of the next value against the series' own history.

    Parameters
    ----------
    fading_factor
        Weight of the newest value in the running mean and variance; smaller values
        remember longer.
    grace_period
        Number of values to learn before any non-zero score.
    min_std
        Floor on the standard deviation, as an absolute value, so a flat series does not
        turn every tiny change into a huge score.
    rel_std
        A second floor, relative to the mean: the scale of a rate grows with its level.
    """

    def __init__(
        self,
        fading_factor: float = 0.05,
        grace_period: int = 10,
        min_std: float = 1.0,
        rel_std: float = 0.1,
    ) -> None:
        self.fading_factor = fading_factor
        self.grace_period = grace_period
        self.min_std = min_std
        self.rel_std = rel_std
        self._mean = stats.EWMean(fading_factor=fading_factor)
        self._var = stats.EWVar(fading_factor=fading_factor)
        self._n = 0

    def learn_one(self, x: dict[str, Any]) -> None:
        v = float(x["value"])
        self._mean.update(v)
        self._var.update(v)
        self._n += 1

    def score_one(self, x: dict[str, Any]) -> float:
        if self._n < self.grace_period:
            return 0.0
        mean = self._mean.get()
        std = math.sqrt(max(self._var.get(), 0.0))
        std = max(std, self.min_std, self.rel_std * abs(mean))
        return max(0.0, (float(x["value"]) - mean) / std)

    @property
    def mean(self) -> float:
        return self._mean.get()
