"""``account_extraction``: a harvest-like account far above its tier's hourly rate.

Examples
--------
>>> rule = ExtractionRule(ExtractionParams(min_hourly=20.0, population_z=3.0))
>>> x = {"extraction": 0.8, "young": True, "hourly_requests": 150.0, "population_z": 7.0}
>>> rule.score_one(x)
7.0
>>> rule.score_one({**x, "extraction": 0.65})   # a young account needs 0.7
0.0
>>> rule.fires(7.0, since_flag_s=10_000.0), rule.fires(2.0, since_flag_s=600.0)
(True, True)
>>> rule.severity(7.0, 150.0), rule.severity(4.0, 150.0)
('critical', 'warning')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from detectors.account_evidence import account_finding, evidence_features
from detectors.baseline import AccountBaseline
from detectors.findings import Finding, Severity
from detectors.windows import AccountWindow, ClosedWindow

__all__ = ["ExtractionParams", "ExtractionRule"]

# A flagged account stays flagged at half the bar for this long: one harvest is one alert,
# not one per wobble around the threshold.
_HYSTERESIS_S = 3600.0


@dataclass(frozen=True)
class ExtractionParams:
    """Parameters of :class:`ExtractionRule` (config: ``detection.extraction_min_hourly``,
    ``extraction_population_z``).

    Parameters
    ----------
    min_hourly
        Requests over the last hour the account needs: below it nobody is harvesting much.
    population_z
        Robust z of the account's hourly rate over its tier's accounts that fires; twice it,
        with five times ``min_hourly``, is critical.
    """

    min_hourly: float = 20.0
    population_z: float = 3.0


#: Extraction-likeness from which a young account has the harvest profile (0.7 includes
#: its youth; an old account needs :data:`OLD_PROFILE`). ``account_ramp`` gates on it too.
YOUNG_PROFILE: Final = 0.7
#: The full profile of an old account: 0.6 of the 0.65 it can reach.
OLD_PROFILE: Final = 0.6


class ExtractionRule:
    """The ``account_extraction`` rule.

    ``score_one(x)`` takes ``extraction`` (0..1), ``young``, ``hourly_requests`` and
    ``population_z`` and returns the population z of an eligible account, else 0. A young
    account needs a harvest-like profile (0.7 includes its youth); an old one the full
    profile (0.6 of the 0.65 it can reach: single-turn, long answers, max_tokens stops),
    which is extraction blended into an established customer. Stateless: the time of the
    account's last flag lives in its baseline.
    """

    detector = "account_extraction"

    def __init__(self, params: ExtractionParams | None = None) -> None:
        self.params = params or ExtractionParams()

    def eligible(self, extraction: float, young: bool, hourly: float) -> bool:
        """Whether the population z is worth computing (cheap gates first)."""
        return (extraction >= (YOUNG_PROFILE if young else OLD_PROFILE)
                and hourly >= self.params.min_hourly)

    def score_one(self, x: dict[str, Any]) -> float:
        if not self.eligible(x["extraction"], bool(x["young"]), x["hourly_requests"]):
            return 0.0
        return float(x["population_z"])

    def fires(self, pop_z: float, since_flag_s: float) -> bool:
        bar = self.params.population_z
        if since_flag_s < _HYSTERESIS_S:
            bar *= 0.5
        return pop_z >= bar

    def severity(self, pop_z: float, hourly: float) -> Severity:
        p = self.params
        critical = pop_z >= 2 * p.population_z and hourly >= 5 * p.min_hourly
        return "critical" if critical else "warning"

    def finding(
        self,
        account_id: str,
        acc: AccountWindow,
        base: AccountBaseline,
        closed: ClosedWindow,
        pop_z: float,
        hourly: float,
        extraction: float,
        tier_median_log_hourly: float,
    ) -> Finding:
        thr = self.params.population_z
        feats = evidence_features(acc)
        feats["hourly_requests"] = round(hourly, 2)
        feats["daily_output_tokens"] = round(base.daily_output_tokens, 1)
        med = tier_median_log_hourly
        return account_finding(
            self.detector, account_id, acc, base, closed,
            score=pop_z,
            threshold=thr,
            severity=self.severity(pop_z, hourly),
            features=feats,
            baseline={
                "tier_median_hourly_requests": None if med != med else round(math.expm1(med), 2)
            },
            signals=sorted(
                [
                    {"signal": "hourly_requests_vs_tier", "score": round(pop_z, 3)},
                    {"signal": "extraction_likeness", "score": round(extraction, 3)},
                ],
                key=lambda s: -s["score"],
            ),
        )
