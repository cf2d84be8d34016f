"""The account rules as classes, their parameter dataclasses and the configuration that
validates into them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from detectors.baseline_rule import BaselineRule, BaselineRuleParams
from detectors.events import Event
from detectors.extraction_rule import ExtractionParams, ExtractionRule
from detectors.params import RULE_FIELDS, DetectionParams
from detectors.pipeline import Detection, Monitor
from detectors.ramp_rule import RampParams, RampRule
from detectors.shift_rule import ProfileShiftRule, ShiftParams
from streams.config import Config, ConfigError, load_config


def test_params_are_frozen():
    for p in (DetectionParams(), BaselineRuleParams(), ExtractionParams(), ShiftParams(),
              RampParams()):
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.threshold = 1.0  # type: ignore[misc, attr-defined]


def test_config_defaults_are_the_detectors_defaults():
    # One place: every [detection] default (and the window settings) is DetectionParams'.
    assert Config().detection_params() == DetectionParams()
    flat = DetectionParams().flat()
    cfg = Config().detection.model_dump()
    assert {k: flat[k] for k in cfg} == cfg
    # Every rule parameter and every other parameter is a configuration field.
    assert set(flat) - {"window_s", "lateness_s"} == set(cfg)
    assert set(RULE_FIELDS) <= set(cfg)


def test_config_validates_into_the_rule_dataclasses(tmp_path: Path):
    p = tmp_path / "c.toml"
    p.write_text("[detection]\naccount_threshold = 8\nshift_z = 7.5\nextraction_min_hourly = 40\n"
                 "[windows]\nsize_s = 30\n")
    params = load_config(p, environ={}).detection_params()
    assert params.baseline == BaselineRuleParams(threshold=8.0)
    assert params.shift == ShiftParams(z=7.5)
    assert params.extraction == ExtractionParams(min_hourly=40.0)
    assert params.window_s == 30.0
    det = Detection(params)
    assert det.baseline_rule.params.threshold == 8.0
    assert det.shift_rule.params.z == 7.5


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[detection]\naccount_persist = 0\n", "detection.account_persist"),
        ("[detection]\nshift_z = -1\n", "detection.shift_z"),
        ('[detection]\ncoordination = "maybe"\n', "detection.coordination"),
        ("[detection]\ncluster_fold_share = 1.5\n", "detection.cluster_fold_share"),
        ("[detection]\ncluster_fold_share = 0\n", "detection.cluster_fold_share"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, toml: str, field: str):
    p = tmp_path / "bad.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_config(p, environ={})
    assert exc.value.errors[0][0] == field


@pytest.mark.parametrize("on", [True, False])
def test_coordination_is_a_config_field(tmp_path: Path, on: bool):
    p = tmp_path / "c.toml"
    p.write_text(f"[detection]\ncoordination = {str(on).lower()}\n")
    cfg = load_config(p, environ={})
    det = Detection(cfg.detection_params())
    assert (det.cohort is not None, det.coactivity is not None) == (on, on)
    env = load_config(environ={"DISTILLWATCH_DETECTION__COORDINATION": str(on).lower()})
    assert env.detection.coordination is on
    assert (Detection(**env.detection_kwargs()).cohort is not None) is on


def test_fold_share_reaches_campaign_assembly(tmp_path: Path):
    p = tmp_path / "c.toml"
    p.write_text("[detection]\ncluster_fold_share = 0.8\n")
    cfg = load_config(p, environ={})
    det = Detection(cfg.detection_params())
    assert det.cluster_kwargs["cluster_fold_share"] == 0.8
    assert det.cluster_stages is not None
    assert det.cluster_stages.assembly.clusters.fold_share == 0.8
    # The worker's campaigns stage picks its assembly's keywords from the configuration by
    # name: a field missing from that list would silently run with the default.
    from detectors.assembly import CampaignAssembly
    from streams.cluster import _ASSEMBLY_KEYS

    kw = {k: v for k, v in cfg.detection_kwargs().items() if k in _ASSEMBLY_KEYS}
    assert CampaignAssembly(**kw).clusters.fold_share == 0.8


def test_unknown_override_is_refused():
    with pytest.raises(TypeError, match="account_treshold"):
        Detection(account_treshold=3.0)


def test_baseline_rule_needs_persistent_departures():
    rule = BaselineRule(BaselineRuleParams(threshold=6.0, persist=3))
    for z in (7.0, 8.0, 2.0, 7.0, 7.0):          # the calm window resets the count
        rule.learn_one({"requests": z, "output_tokens": 0.0})
        assert not rule.fires()
    rule.learn_one({"requests": 0.0, "output_tokens": 9.0})
    assert rule.fires()
    # A NaN z on one signal must not hide the other.
    assert rule.score_one({"requests": float("nan"), "output_tokens": 7.0}) == 7.0


def test_baseline_rule_severity_both_ways():
    rule = BaselineRule(BaselineRuleParams(threshold=6.0, critical_z=12.0), suspicious=0.5)

    def z(req: float, out: float) -> dict[str, float]:
        return {"requests": req, "output_tokens": out}

    assert rule.severity(z(7.0, 7.0), extraction=0.1, young=True) == "info"
    assert rule.severity(z(7.0, 1.0), extraction=0.6, young=True) == "warning"
    assert rule.severity(z(13.0, 6.0), extraction=0.1, young=True) == "warning"
    assert rule.severity(z(13.0, 6.0), extraction=0.6, young=False) == "warning"
    assert rule.severity(z(13.0, 1.0), extraction=0.6, young=True) == "critical"
    # Extreme on one signal only (a burst of short requests; one very long answer): info
    # unless the account is extraction-like.
    assert rule.severity(z(13.0, 5.9), extraction=0.1, young=True) == "info"
    assert rule.severity(z(2.0, 13.0), extraction=0.1, young=False) == "info"


def test_extraction_rule_gates_and_hysteresis():
    rule = ExtractionRule(ExtractionParams(min_hourly=20.0, population_z=4.0))
    x = {"extraction": 0.65, "young": False, "hourly_requests": 30.0, "population_z": 5.0}
    assert rule.score_one(x) == 5.0                              # old: 0.6 suffices
    assert rule.score_one({**x, "young": True}) == 0.0           # young: 0.7 needed
    assert rule.score_one({**x, "hourly_requests": 19.0}) == 0.0
    assert not rule.fires(3.0, since_flag_s=7200.0)
    assert rule.fires(3.0, since_flag_s=1800.0)                  # half the bar while held
    assert rule.severity(8.0, 100.0) == "critical"
    assert rule.severity(8.0, 99.0) == "warning"


def test_shift_rule_gates():
    rule = ProfileShiftRule(ShiftParams(min_hourly=20.0, z=6.0, min_windows=30))
    assert rule.eligible(1, False, 31, 0.5)
    assert not rule.eligible(0, False, 31, 0.5)
    assert not rule.eligible(1, False, 30, 0.5)
    assert not rule.eligible(1, False, 31, 0.6)
    z = rule.score_one({"harvest_like_hourly": 25.0, "usual_hourly": 3.0})
    assert z == pytest.approx(11.0)
    assert rule.fires(25.0, z) and not rule.fires(19.0, z) and not rule.fires(25.0, 5.9)


def test_rule_parameters_reach_the_pipeline():
    """A ramping account: the default threshold fires account_baseline, an impossible
    threshold passed through the flat override never does."""

    def run(**kw: float) -> set[str]:
        mon = Monitor(window_s=60, lateness_s=0, account_grace=3, coordination=False, **kw)
        changes = []
        for minute in range(12):
            n = 5 if minute < 8 else 200
            for i in range(n):
                changes += mon.add(Event("acct-1", minute * 60 + i * 0.1, "m", 50, 500))
        changes += mon.flush()
        return {c["detector"] for c in changes}

    assert "account_baseline" in run()
    assert "account_baseline" not in run(account_threshold=99.0)


def test_every_rule_finding_has_the_account_layout():
    """The account rules build findings through one builder: an account finding for the closed
    window, the account's org, the rule's own baseline and signals, and the evidence in the
    order alert consumers (and byte-compared replays) see it."""
    from detectors.baseline import AccountBaseline
    from detectors.windows import AccountWindow, ClosedWindow

    acc = AccountWindow()
    for i in range(40):
        acc.add(Event("acct-9", 120.0 + i, "m", 100, 900, org_id="org-9"))
    base = AccountBaseline()
    closed = ClosedWindow(120.0, 180.0, {"acct-9": acc})
    made = {
        "account_baseline": BaselineRule(BaselineRuleParams()).finding(
            "acct-9", acc, base, closed, {"requests": 7.25, "output_tokens": 3.0}, 0.0, 0.4,
            False),
        "account_extraction": ExtractionRule(ExtractionParams()).finding(
            "acct-9", acc, base, closed, 5.5, 40.0, 0.8, float("nan")),
        "account_profile_shift": ProfileShiftRule(ShiftParams()).finding(
            "acct-9", acc, base, closed, 30.0, 2.0, 9.0),
        "account_ramp": RampRule(RampParams()).finding(
            "acct-9", acc, base, closed, 0.9, (12.0, 11.0, 60.0, 4.5)),
    }
    for detector, f in made.items():
        assert (f.entity_type, f.entity_id, f.detector, f.org_id) == (
            "account", "acct-9", detector, "org-9")
        assert (f.window_start, f.window_end) == (120.0, 180.0)
        keys = list(f.evidence)
        assert keys[:3] == ["features", "baseline", "profile"]
        assert keys[-3:] == ["score", "threshold", "signals"]
        assert f.evidence["score"] == f.score and f.evidence["threshold"] == f.threshold
        assert f.evidence["features"]["requests"] == 40
    assert made["account_baseline"].score == 7.25
    assert made["account_baseline"].evidence["population_lift"] == 1.0
    assert made["account_extraction"].evidence["baseline"] == {
        "tier_median_hourly_requests": None}
    assert made["account_profile_shift"].evidence["features"]["harvest_like_last_hour"] == 30.0
    assert made["account_profile_shift"].evidence["signals"][0]["score"] == 9.0
