"""``account_profile_shift``: an established, conversational account suddenly produces
harvest-like answers (extraction blended into a real customer's traffic).

Examples
--------
>>> rule = ProfileShiftRule(ShiftParams(min_hourly=20.0, z=6.0, min_windows=30))
>>> rule.eligible(harvest_like=3, young=False, windows=120, usual_single_turn=0.3)
True
>>> rule.eligible(harvest_like=3, young=True, windows=120, usual_single_turn=0.3)
False
>>> rule.score_one({"harvest_like_hourly": 40.0, "usual_hourly": 2.0})   # Poisson z
21.9...
>>> rule.fires(40.0, 21.9), rule.fires(12.0, 21.9)
(True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from detectors.account_evidence import account_finding, evidence_features
from detectors.baseline import AccountBaseline
from detectors.findings import Finding
from detectors.windows import AccountWindow, ClosedWindow

__all__ = ["ProfileShiftRule", "ShiftParams"]

# Long-memory single-turn share below which an account is "usually conversational".
_CONVERSATIONAL = 0.6


@dataclass(frozen=True)
class ShiftParams:
    """Parameters of :class:`ProfileShiftRule` (config: ``detection.shift_min_hourly``,
    ``shift_z``, ``shift_min_windows``).

    Parameters
    ----------
    min_hourly
        Harvest-like answers (single-turn, cut at max_tokens or longer than 1,500 tokens)
        over the last hour the account needs.
    z
        Poisson z of that hour over the account's usual hour that fires.
    min_windows
        Active windows of history before the rule can fire: a usual hour must be known.
    """

    min_hourly: float = 20.0
    z: float = 6.0
    min_windows: int = 30


class ProfileShiftRule:
    """The ``account_profile_shift`` rule. ``score_one(x)`` is the Poisson z of
    ``harvest_like_hourly`` over ``usual_hourly``; the hourly counters themselves are
    learned by the account's :class:`~detectors.baseline.AccountBaseline`."""

    detector = "account_profile_shift"

    def __init__(self, params: ShiftParams | None = None) -> None:
        self.params = params or ShiftParams()

    def eligible(self, harvest_like: int, young: bool, windows: float,
                 usual_single_turn: float) -> bool:
        return bool(
            harvest_like
            and not young
            and windows > self.params.min_windows
            and usual_single_turn < _CONVERSATIONAL
        )

    def score_one(self, x: dict[str, Any]) -> float:
        h, b = x["harvest_like_hourly"], x["usual_hourly"]
        return float((h - b) / math.sqrt(b + 1.0))

    def fires(self, hourly: float, z: float) -> bool:
        return hourly >= self.params.min_hourly and z >= self.params.z

    def finding(
        self,
        account_id: str,
        acc: AccountWindow,
        base: AccountBaseline,
        closed: ClosedWindow,
        hourly: float,
        usual: float,
        z: float,
    ) -> Finding:
        feats = evidence_features(acc)
        feats["harvest_like_last_hour"] = round(hourly, 2)
        thr = self.params.z
        return account_finding(
            self.detector, account_id, acc, base, closed,
            score=z,
            threshold=thr,
            severity="warning",
            features=feats,
            baseline={"usual_harvest_like_per_hour": round(usual, 3)},
            signals=[
                {"signal": "harvest_like_requests_per_hour", "score": round(z, 3)},
                {"signal": "max_tokens_share_window",
                 "score": round(acc.max_tokens_stops / max(acc.requests, 1), 3)},
            ],
        )
