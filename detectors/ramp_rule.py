"""``account_ramp``: a young, harvest-profiled account harvesting hour after hour; an alert
of its own once its hourly harvest is measurably rising, and before that a harvester for
the key pair rule (two such accounts on one card or /24 are a campaign).

A slow ramp starts at a few requests an hour: far below any rate bar (``account_extraction``
needs 20 an hour and a tier z of 3) and too few accounts for a key campaign or a swarm. What
it cannot hide while it is small is *persistence*: to harvest at all at 3 an hour it must
keep going every hour with the harvest profile (single-turn, long answers, ``max_tokens``
stops) of a young account. So the rule counts, per account, a *run* of clock hours since
its first harvest-like answer (single-turn and cut at ``max_tokens`` or longer than 1,500
tokens), broken by ``max_gap_h`` hours without one (state: :mod:`detectors.ramp`).

* **Sustained** (:meth:`RampRule.sustained`): the run is ``min_hours`` long, at least
  ``min_coverage`` of its hours held a harvest-like answer, and the hourly harvest is not
  falling (Poisson trend z at least ``trend_z``). Not an alert by itself (a hydra's every
  member is sustained): the account is marked a harvester for campaign assembly, whose
  accomplice rule flags a strong key (card, /24, template, signup cohort) that it shares
  with another suspect.
* **Ramp** (:meth:`RampRule.fires`): sustained, and the trend z is at least ``alert_z``: the
  rise itself is measurable. A warning of its own (a lone account ramping up).

Examples
--------
>>> rule = RampRule(RampParams(min_hours=5, min_coverage=0.8, trend_z=-1.0, alert_z=4.0))
>>> x = {"extraction": 0.8, "young": True, "hours": 6.0, "active": 5.0, "trend_z": 0.3}
>>> rule.sustained(**x), rule.fires(**x)
(True, False)
>>> rule.fires(**{**x, "trend_z": 4.5})
True
>>> rule.sustained(**{**x, "young": False}), rule.sustained(**{**x, "active": 4.0})
(False, False)
>>> rule.sustained(**{**x, "trend_z": -2.5})       # winding down
False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from detectors.account_evidence import account_finding, evidence_features
from detectors.extraction_rule import YOUNG_PROFILE
from detectors.findings import Finding

if TYPE_CHECKING:
    from detectors.baseline import AccountBaseline
    from detectors.windows import AccountWindow, ClosedWindow

__all__ = ["RampParams", "RampRule"]


@dataclass(frozen=True)
class RampParams:
    """Parameters of :class:`RampRule` (config: ``detection.ramp_min_hours``,
    ``ramp_min_coverage``, ``ramp_max_gap_h``, ``ramp_trend_z``).

    Parameters
    ----------
    min_hours
        Complete clock hours the run must span before the rule can fire.
    min_coverage
        Share of the run's hours that must hold at least one harvest-like answer.
    max_gap_h
        Consecutive hours without a harvest-like answer that end a run.
    trend_z
        Lowest Poisson trend z of the run's hourly harvest: below it the harvest is winding
        down (a job finishing), not sustained.
    alert_z
        Trend z from which a sustained run is a ramp and alerts on its own.
    """

    min_hours: int = 5
    min_coverage: float = 0.8
    max_gap_h: int = 3
    trend_z: float = -1.0
    alert_z: float = 4.0


class RampRule:
    """The ``account_ramp`` rule. Stateless; the run counters live in the account's
    :class:`~detectors.baseline.AccountBaseline` (:mod:`detectors.ramp`). The profile gate
    is ``account_extraction``'s for a young account (extraction-likeness 0.7, which includes
    youth): an old customer's steady pipeline is never a ramp here."""

    detector = "account_ramp"

    def __init__(self, params: RampParams | None = None) -> None:
        self.params = params or RampParams()

    @staticmethod
    def profiled(extraction: float, young: bool) -> bool:
        """Whether the account is one the rule judges (young, harvest profile): the gate
        before its run's statistics are worth computing."""
        return young and extraction >= YOUNG_PROFILE

    def sustained(self, *, extraction: float, young: bool, hours: float, active: float,
                  trend_z: float) -> bool:
        """Harvesting hour after hour, not winding down: a harvester for the pair rule."""
        p = self.params
        return (
            self.profiled(extraction, young)
            and hours >= p.min_hours
            and active >= p.min_coverage * hours
            and trend_z >= p.trend_z
        )

    def fires(self, *, extraction: float, young: bool, hours: float, active: float,
              trend_z: float) -> bool:
        """Sustained and measurably rising: an ``account_ramp`` alert."""
        return trend_z >= self.params.alert_z and self.sustained(
            extraction=extraction, young=young, hours=hours, active=active, trend_z=trend_z)

    def finding(
        self,
        account_id: str,
        acc: AccountWindow,
        base: AccountBaseline,
        closed: ClosedWindow,
        extraction: float,
        stats: tuple[float, float, float, float],
    ) -> Finding:
        hours, active, total, z = stats
        feats = evidence_features(acc)
        feats["run_hours"] = hours
        feats["run_harvest_hours"] = active
        feats["run_harvest_like"] = total
        feats["hourly_requests"] = round(base.hourly_requests, 2)
        return account_finding(
            self.detector, account_id, acc, base, closed,
            score=z,
            threshold=self.params.alert_z,
            severity="warning",
            features=feats,
            baseline={"harvest_like_per_hour": round(total / hours, 3) if hours else 0.0},
            signals=[
                {"signal": "harvest_trend_z", "score": round(z, 3)},
                {"signal": "sustained_hours", "score": hours},
                {"signal": "harvest_hour_coverage", "score": round(active / hours, 3)},
                {"signal": "extraction_likeness", "score": round(extraction, 3)},
            ],
        )
