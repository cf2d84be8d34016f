"""Scenario validation: every error names the field and the value received."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.scenario import ScenarioError, load_scenario, scenario_from_dict

SCENARIOS = sorted((Path(__file__).parents[2] / "scenarios").glob("*.toml"))
META = {"name": "t", "start": "2026-01-05T00:00:00Z", "duration_h": 4}


def _errors(data: dict) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data)
    return info.value.errors


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_shipped_scenarios_are_valid(path: Path) -> None:
    s = load_scenario(path)
    assert s.scenario.duration_h > 0


def test_shipped_scenarios_cover_every_trap_and_campaign_kind() -> None:
    kinds = set()
    for path in SCENARIOS:
        s = load_scenario(path)
        kinds |= {t.kind for t in s.traps} | {c.kind for c in s.campaigns}
    assert kinds == {"popular_tool", "enterprise_batch", "launch_day", "research_org",
                     "reseller", "class_cohort", "sso_onboarding", "cron_fleet",
                     "app_template", "hydra", "burst", "model_pivot", "slow_ramp", "blend",
                     "swarm", "lockstep"}


def test_unknown_field_is_named() -> None:
    errs = _errors({"scenario": {**META, "colour": "red"}})
    assert errs == ["scenario.colour: unknown field (see scenarios/README.md for the valid "
                    "ones) (got 'red')"]


def test_nested_errors_name_the_path_and_value() -> None:
    errs = _errors({
        "scenario": META,
        "benign": {"accounts": -3, "tiers": {"free": {"share": 2}}},
        "campaigns": [{"kind": "hydra", "id": "h", "accounts": 0}],
    })
    assert any(e.startswith("benign.accounts:") and e.endswith("(got -3)") for e in errs)
    assert any(e.startswith("benign.tiers.free.share:") and "(got 2)" in e for e in errs)
    # The union tag ("hydra") is not part of the path users write.
    assert any(e.startswith("campaigns.0.accounts:") and e.endswith("(got 0)") for e in errs)


def test_unknown_kind_and_missing_required_fields() -> None:
    errs = _errors({"scenario": {"name": "t"}, "traps": [{"kind": "holiday"}]})
    assert any(e.startswith("scenario.start:") for e in errs)
    assert any(e.startswith("scenario.duration_h:") for e in errs)
    assert any(e.startswith("traps.0:") and "holiday" in e for e in errs)


def test_cross_field_checks_name_the_field() -> None:
    errs = _errors({"scenario": META, "campaigns": [{"kind": "burst", "id": "b", "start_h": 9}]})
    assert errs == ["campaigns.0.start_h: must be before scenario.duration_h (4.0) (got 9.0)"]
    errs = _errors({"scenario": META, "campaigns": [
        {"kind": "model_pivot", "id": "p", "to_model": "nope", "pivot_h": 1}]})
    assert errs[0].startswith("campaigns.0.to_model: unknown model") and "(got 'nope')" in errs[0]
    errs = _errors({"scenario": META, "benign": {"accounts": 1},
                    "campaigns": [{"kind": "blend", "id": "b", "accounts": 2}]})
    assert errs[0].startswith("campaigns.0.accounts: blend needs")


def test_start_needs_a_time_zone() -> None:
    errs = _errors({"scenario": {**META, "start": "2026-01-05T00:00:00"}})
    assert errs[0].startswith("scenario.start:") and "time zone" in errs[0]


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario\nname=")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)
