"""``account_baseline``: an account's window departs from its own history.

Examples
--------
>>> rule = BaselineRule(BaselineRuleParams(threshold=6.0, persist=2))
>>> rule.score_one({"requests": 7.5, "output_tokens": 3.0})
7.5
>>> rule.learn_one({"requests": 7.5, "output_tokens": 3.0})   # first anomalous window
>>> rule.fires()
False
>>> rule.learn_one({"requests": 8.0, "output_tokens": 9.0})   # the second in a row
>>> rule.fires()
True
>>> z = {"requests": 13.0, "output_tokens": 7.0}
>>> rule.severity(z, extraction=0.9, young=True), rule.severity(z, extraction=0.0, young=True)
('critical', 'warning')
>>> rule.severity({"requests": 13.0, "output_tokens": 2.0}, extraction=0.0, young=True)
'info'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from detectors.account_evidence import account_finding
from detectors.baseline import AccountBaseline
from detectors.findings import Finding, Severity
from detectors.windows import AccountWindow, ClosedWindow

__all__ = ["BaselineRule", "BaselineRuleParams"]


@dataclass(frozen=True)
class BaselineRuleParams:
    """Parameters of :class:`BaselineRule` (config: ``detection.account_threshold``,
    ``account_critical_z``, ``account_persist``).

    Parameters
    ----------
    threshold
        Robust z of a window's requests or output tokens over the account's baseline (after
        the tier's lift) that counts as anomalous.
    critical_z
        z from which a departure is a warning on its own, and critical for a young,
        extraction-like account.
    persist
        Consecutive anomalous windows before the rule fires: benign users burst for a minute,
        abuse keeps going.
    """

    threshold: float = 6.0
    critical_z: float = 12.0
    persist: int = 2


class BaselineRule:
    """The ``account_baseline`` rule over an account's per-signal z-scores.

    ``score_one(x)`` is the largest z of ``x`` (``{"requests": z, "output_tokens": z}``).
    The consecutive-window count is per account: in the pipeline it lives in the account's
    :class:`~detectors.baseline.AccountBaseline` (``base.streak``, a float of its state
    array), so :meth:`streak_fires` is what :class:`~detectors.pipeline.Detection` calls;
    :meth:`learn_one` / :meth:`fires` keep one standalone count for a single series.
    """

    detector = "account_baseline"

    def __init__(self, params: BaselineRuleParams | None = None, suspicious: float = 0.5) -> None:
        self.params = params or BaselineRuleParams()
        self.suspicious = suspicious
        self._streak = 0

    def score_one(self, x: dict[str, Any]) -> float:
        z_req, z_out = x.get("requests", 0.0), x.get("output_tokens", 0.0)
        # Not max(): a NaN z must not hide the other signal (max(nan, z) is nan).
        return z_req if z_req > z_out else z_out

    def learn_one(self, x: dict[str, Any]) -> None:
        self._streak = self._streak + 1 if self.score_one(x) >= self.params.threshold else 0

    def fires(self) -> bool:
        return self._streak >= self.params.persist

    def streak_fires(self, score: float, base: AccountBaseline) -> bool:
        """Count the window in the account's own streak; True once it persists."""
        return base.streak(score >= self.params.threshold) >= self.params.persist

    def severity(self, scores: dict[str, float], extraction: float, young: bool) -> Severity:
        """Info, warning or critical for a finding with per-signal ``scores``.

        A rate departure alone is common in benign traffic (apps burst, new users try
        things); it pages only when the account is extraction-like or the departure is
        extreme. Extreme means ``critical_z`` on one signal *and* a departure
        (``threshold``) on both: a harvest moves the answers' volume with the requests,
        whereas a retry storm of short requests, or one very long answer, moves one signal.
        """
        p = self.params
        score = max(scores.values())
        suspect = extraction >= self.suspicious
        if score >= p.critical_z and young and suspect:
            return "critical"
        if suspect or (score >= p.critical_z and min(scores.values()) >= p.threshold):
            return "warning"
        return "info"

    def finding(
        self,
        account_id: str,
        acc: AccountWindow,
        base: AccountBaseline,
        closed: ClosedWindow,
        scores: dict[str, float],
        lift: float,
        extraction: float,
        young: bool,
    ) -> Finding:
        score = max(scores.values())
        threshold = self.params.threshold
        signals = [{"signal": k, "score": round(v, 3)} for k, v in scores.items()]
        signals.append({"signal": "extraction_likeness", "score": round(extraction, 3)})
        return account_finding(
            self.detector, account_id, acc, base, closed,
            score=score,
            threshold=threshold,
            severity=self.severity(scores, extraction, young),
            baseline=base.baseline(),
            population_lift=round(math.exp(lift), 3),
            signals=sorted(signals, key=lambda s: -s["score"]),
        )
