"""Per-account baselines: is this window unusual for this account's own history?

Examples
--------
>>> b = AccountBaseline(grace_period=3, threshold=4.0)
>>> for _ in range(5):
...     b.learn_one({"requests": 10.0, "output_tokens": 5000.0})
>>> b.score_one({"requests": 10.0, "output_tokens": 5000.0})
0.0
>>> b.score_one({"requests": 200.0, "output_tokens": 100000.0}) > 4.0
True
"""

from __future__ import annotations

from typing import Any

from detectors.rate import RateDetector

__all__ = ["AccountBaseline"]

_SIGNALS = ("requests", "output_tokens")


class AccountBaseline:
    """Online baselines of request count and output tokens per active window.

    Parameters
    ----------
    grace_period
        Active windows to learn before the account can be scored.
    threshold
        Score (in robust standard deviations) at which a window is anomalous.
    """

    def __init__(self, grace_period: int = 5, threshold: float = 6.0) -> None:
        self.grace_period = grace_period
        self.threshold = threshold
        self._rates = {
            # Tokens vary more and on a larger scale than counts: a larger absolute floor.
            "requests": RateDetector(grace_period=grace_period, min_std=2.0, rel_std=0.25),
            "output_tokens": RateDetector(grace_period=grace_period, min_std=500.0, rel_std=0.25),
        }

    def learn_one(self, x: dict[str, Any]) -> None:
        for name in _SIGNALS:
            self._rates[name].learn_one({"value": x[name]})

    def signal_scores(self, x: dict[str, Any]) -> dict[str, float]:
        return {name: self._rates[name].score_one({"value": x[name]}) for name in _SIGNALS}

    def score_one(self, x: dict[str, Any]) -> float:
        return max(self.signal_scores(x).values())

    def baseline(self) -> dict[str, float]:
        """Current learned means, for evidence."""
        return {name: round(r.mean, 3) for name, r in self._rates.items()}
