"""Every detection parameter and its default, in one place.

:class:`DetectionParams` is what :class:`~detectors.pipeline.Detection` and
:class:`~detectors.pipeline.Monitor` run with; the configuration (``[detection]`` in
``streams/config.py``) takes its defaults from here and validates into it, so a default
changed here changes the worker, ``replay``, the evaluation suite and the benches at once.
The flat names (``account_threshold``, ``shift_z``, ...) are the configuration's field
names; the account rules' parameters are grouped in their own frozen dataclasses.

Examples
--------
>>> p = DetectionParams.from_flat(account_threshold=8.0, window_s=30.0)
>>> p.baseline.threshold, p.window_s, p.baseline.persist
(8.0, 30.0, 2)
>>> p.flat()["account_threshold"]
8.0
>>> DetectionParams.from_flat(account_treshold=8.0)
Traceback (most recent call last):
...
TypeError: unknown detection parameter 'account_treshold'
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from detectors.baseline_rule import BaselineRuleParams
from detectors.extraction_rule import ExtractionParams
from detectors.ramp_rule import RampParams
from detectors.shift_rule import ShiftParams

__all__ = ["RULE_FIELDS", "DetectionParams"]

_DAY = 86400.0

# Flat (configuration) name -> (rule group, field of the rule's parameters).
RULE_FIELDS: dict[str, tuple[str, str]] = {
    "account_threshold": ("baseline", "threshold"),
    "account_critical_z": ("baseline", "critical_z"),
    "account_persist": ("baseline", "persist"),
    "extraction_min_hourly": ("extraction", "min_hourly"),
    "extraction_population_z": ("extraction", "population_z"),
    "shift_min_hourly": ("shift", "min_hourly"),
    "shift_z": ("shift", "z"),
    "shift_min_windows": ("shift", "min_windows"),
    "ramp_min_hours": ("ramp", "min_hours"),
    "ramp_min_coverage": ("ramp", "min_coverage"),
    "ramp_max_gap_h": ("ramp", "max_gap_h"),
    "ramp_trend_z": ("ramp", "trend_z"),
    "ramp_alert_z": ("ramp", "alert_z"),
}


@dataclass(frozen=True)
class DetectionParams:
    """Detection parameters (meaning and runbooks: ``docs/detectors.md``).

    Parameters
    ----------
    window_s, lateness_s
        Event-time window length and allowed lateness.
    account_grace
        Active windows an account's own baseline learns before it can fire without a prior.
    account_hold_s
        An account finding is re-emitted this long (event time) after it last fired.
    young_days
        Accounts younger than this count as young (cluster evidence, severity).
    suspicious
        Extraction-likeness (0..1) from which an account is a suspicious cluster member.
    baseline, extraction, shift, ramp
        The account rules' parameters.
    cluster_*, template_*
        See :class:`~detectors.clusters.ClusterDetector` and
        :class:`~detectors.templates.TemplateIndex`.
    population_min_accounts
        Active accounts of a tier needed to measure its lift.
    max_members
        Cap on the member list of cluster findings.
    account_ttl_s
        An account inactive this long (event time) loses its state.
    coordination
        Run the swarm (``cohort_swarm``) and lockstep (``coactivity_lockstep``) detectors.
    quiet_windows
        Quiet windows before an alert resolves (the alert book's).
    """

    window_s: float = 60.0
    lateness_s: float = 10.0
    account_grace: int = 5
    account_hold_s: float = 3600.0
    young_days: float = 30.0
    suspicious: float = 0.5
    baseline: BaselineRuleParams = field(default_factory=BaselineRuleParams)
    extraction: ExtractionParams = field(default_factory=ExtractionParams)
    shift: ShiftParams = field(default_factory=ShiftParams)
    ramp: RampParams = field(default_factory=RampParams)
    cluster_windows: int = 10
    cluster_min_members: int = 6
    cluster_min_share: float = 0.5
    cluster_min_z: float = 4.0
    cluster_critical_members: int = 20
    cluster_critical_young_share: float = 0.5
    cluster_hold_windows: int = 9
    cluster_critical_harvest_tokens: float = 50_000_000.0
    cluster_fold_share: float = 0.5
    template_min_accounts: int = 4
    template_max_bits: int = 10
    population_min_accounts: int = 30
    max_members: int = 10_000
    account_ttl_s: float = 7 * _DAY
    coordination: bool = True
    quiet_windows: int = 3

    @classmethod
    def from_flat(cls, **kw: Any) -> DetectionParams:
        """Build from flat (configuration) names; unknown names raise ``TypeError``."""
        return cls().replace_flat(**kw)

    def replace_flat(self, **kw: Any) -> DetectionParams:
        """A copy with the flat-named parameters ``kw`` changed."""
        top = {f.name for f in fields(self)} - set(_GROUPS)
        direct: dict[str, Any] = {}
        groups: dict[str, dict[str, Any]] = {}
        for name, value in kw.items():
            if name in top:
                direct[name] = value
            elif name in RULE_FIELDS:
                group, sub = RULE_FIELDS[name]
                groups.setdefault(group, {})[sub] = value
            else:
                raise TypeError(f"unknown detection parameter {name!r}")
        for group, sub_kw in groups.items():
            direct[group] = replace(getattr(self, group), **sub_kw)
        return replace(self, **direct)

    def flat(self) -> dict[str, Any]:
        """Every parameter under its flat (configuration) name."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _GROUPS}
        for name, (group, sub) in RULE_FIELDS.items():
            out[name] = getattr(getattr(self, group), sub)
        return out


_GROUPS = ("baseline", "extraction", "shift", "ramp")
