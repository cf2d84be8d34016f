"""Scenario files: what traffic to simulate, validated with errors that name the field.

A scenario is a TOML file with a ``[scenario]`` table, an optional ``[benign]`` population,
``[[traps]]`` (benign look-alikes) and ``[[campaigns]]`` (extraction). Every field, its
meaning and default is documented in ``scenarios/README.md``; times are hours from
``scenario.start``.

>>> s = scenario_from_dict({"scenario": {"name": "t", "start": "2026-01-05T00:00:00Z",
...                                      "duration_h": 2}, "benign": {"accounts": 10}})
>>> s.benign.accounts, s.scenario.duration_h
(10, 2.0)
>>> try:
...     scenario_from_dict({"scenario": {"name": "t", "start": "2026-01-05T00:00:00Z",
...                                      "duration_h": -1}})
... except ScenarioError as err:
...     print(err.errors[0])
scenario.duration_h: Input should be greater than 0 (got -1)
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "AppTemplate",
    "Blend",
    "Burst",
    "Campaign",
    "ClassCohort",
    "CronFleet",
    "EnterpriseBatch",
    "Hydra",
    "LaunchDay",
    "Lockstep",
    "ModelPivot",
    "PopularTool",
    "ResearchOrg",
    "Reseller",
    "Scenario",
    "ScenarioError",
    "SlowRamp",
    "SsoOnboarding",
    "Swarm",
    "Trap",
    "load_scenario",
    "scenario_from_dict",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Share = Annotated[float, Field(ge=0.0, le=1.0)]
Hours = Annotated[float, Field(ge=0.0)]


class ModelSpec(_Model):
    name: str = Field(min_length=1)
    share: float = Field(1.0, ge=0.0)
    released_h: float | None = None
    adoption_share: Share = 0.3
    adoption_h: float = Field(24.0, gt=0.0)


class ScenarioMeta(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    start: datetime
    duration_h: float = Field(gt=0.0, le=24 * 120)
    models: list[ModelSpec] = Field(
        default_factory=lambda: [
            ModelSpec(name="model-large", share=0.35),
            ModelSpec(name="model-medium", share=0.45),
            ModelSpec(name="model-small", share=0.2),
        ],
        min_length=1,
    )

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("start needs a time zone, e.g. 2026-01-05T00:00:00Z")
        return v

    @model_validator(mode="after")
    def _unique_models(self) -> ScenarioMeta:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"models: names must be unique, got {names}")
        return self


class TierSpec(_Model):
    share: Share
    rate_scale: float = Field(1.0, gt=0.0)
    app_share: Share = 0.05
    rate_limited_share: Share = 0.01
    error_share: Share = 0.005


def _default_tiers() -> dict[str, TierSpec]:
    return {
        "free": TierSpec(share=0.55, rate_scale=0.5, app_share=0.01, rate_limited_share=0.03),
        "pro": TierSpec(share=0.4, rate_scale=1.0, app_share=0.03),
        "enterprise": TierSpec(share=0.05, rate_scale=3.0, app_share=0.2, rate_limited_share=0.002),
    }


class Benign(_Model):
    accounts: int = Field(0, ge=0, le=2_000_000)
    tiers: dict[str, TierSpec] = Field(default_factory=_default_tiers)
    sessions_per_day: float = Field(1.0, gt=0.0)
    rate_log_sigma: float | None = Field(None, ge=0.0, le=4.0)
    app_requests_per_hour: float = Field(4.0, gt=0.0)
    turns_mean: float = Field(3.0, ge=1.0)
    think_time_s: float = Field(45.0, gt=0.0)
    system_prompt_share: Share = 0.3
    max_tokens_share: Share = 0.02
    timezones: dict[str, float] = Field(
        default_factory=lambda: {"-8": 0.25, "-5": 0.2, "0": 0.15, "1": 0.15, "8": 0.15, "5.5": 0.1}
    )
    age_days_min: float = Field(2.0, gt=0.0)
    age_days_max: float = Field(1500.0, gt=0.0)

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, v: dict[str, TierSpec]) -> dict[str, TierSpec]:
        if not v or sum(t.share for t in v.values()) <= 0:
            raise ValueError("needs at least one tier with share > 0")
        return v

    @field_validator("timezones")
    @classmethod
    def _tz(cls, v: dict[str, float]) -> dict[str, float]:
        for k, share in v.items():
            try:
                off = float(k)
            except ValueError:
                raise ValueError(f"keys are UTC offsets in hours like \"-5\", got {k!r}") from None
            if not -12 <= off <= 14 or share < 0:
                raise ValueError(f"offset {k} must be in [-12, 14] with a share >= 0")
        if sum(v.values()) <= 0:
            raise ValueError("shares must add up to more than 0")
        return v


class _Window(_Model):
    start_h: Hours = 0.0
    duration_h: float | None = Field(None, gt=0.0)


# -- traps (benign look-alikes) ---------------------------------------------------------------


class PopularTool(_Window):
    kind: Literal["popular_tool"]
    name: str = "popular-tool"
    accounts: int = Field(2000, ge=1)
    user_agent: str = "acme-code/1.8.2 (node)"
    sessions_per_day: float = Field(4.0, gt=0.0)
    turns_mean: float = Field(6.0, ge=1.0)


class EnterpriseBatch(_Window):
    kind: Literal["enterprise_batch"]
    name: str = "enterprise-batch"
    accounts: int = Field(1, ge=1)
    requests_per_hour: float = Field(30.0, gt=0.0)
    multiplier: float = Field(50.0, ge=1.0)
    batch_hour_utc: float = Field(2.0, ge=0.0, lt=24.0)
    batch_h: float = Field(1.0, gt=0.0, le=12.0)


class LaunchDay(_Window):
    kind: Literal["launch_day"]
    name: str = "launch-day"
    tier: str = "pro"
    multiplier: float = Field(5.0, ge=1.0)
    duration_h: float | None = Field(6.0, gt=0.0)
    new_model: str | None = None
    new_model_share: Share = 0.5


class ResearchOrg(_Window):
    kind: Literal["research_org"]
    name: str = "research-org"
    keys: int = Field(50, ge=1)
    runs_per_day: float = Field(2.0, gt=0.0)
    run_h: float = Field(2.0, gt=0.0)
    requests_per_key_hour: float = Field(40.0, gt=0.0)
    max_tokens_share: Share = 0.2


class Reseller(_Window):
    kind: Literal["reseller"]
    name: str = "reseller"
    accounts: int = Field(1, ge=1)
    tenants: int = Field(300, ge=1)
    requests_per_hour: float = Field(1500.0, gt=0.0)


class ClassCohort(_Window):
    """A university class or hackathon: ``accounts`` sign up within ``signup_h`` of
    ``start_h`` under one org, try the API at once, then do homework for days."""

    kind: Literal["class_cohort"]
    name: str = "class-cohort"
    accounts: int = Field(200, ge=1)
    signup_h: float = Field(1.0, gt=0.0)
    first_requests_max: int = Field(4, ge=1)
    sessions_per_day: float = Field(1.5, gt=0.0)
    turns_mean: float = Field(5.0, ge=1.0)
    assignments: int = Field(6, ge=1)
    assignment_share: Share = 0.5
    campus_share: Share = 0.5
    tz: float = Field(-5.0, ge=-12.0, le=14.0)


class SsoOnboarding(_Window):
    """An enterprise rolls out SSO: ``accounts`` new accounts of one org are created over
    ``signup_h`` (a morning), then used at work from the company's egress."""

    kind: Literal["sso_onboarding"]
    name: str = "sso-onboarding"
    accounts: int = Field(500, ge=1)
    signup_h: float = Field(4.0, gt=0.0)
    sessions_per_day: float = Field(3.0, gt=0.0)
    turns_mean: float = Field(4.0, ge=1.0)
    internal_tool_share: Share = 0.5
    tz: float = Field(1.0, ge=-12.0, le=14.0)


class CronFleet(_Window):
    """A customer's fleet of service accounts (one org, one card) fired by cron on the
    same minute of every hour: templated single-turn jobs, perfectly in step."""

    kind: Literal["cron_fleet"]
    name: str = "cron-fleet"
    accounts: int = Field(40, ge=1)
    minute_of_hour: int = Field(7, ge=0, le=59)
    requests_per_fire: int = Field(4, ge=1)
    fire_s: float = Field(50.0, gt=0.0, le=3600.0)
    every_h: float = Field(1.0, gt=0.0)
    templates: int = Field(5, ge=1)


class AppTemplate(_Window):
    """A popular app whose users all send its prompt template through their own keys:
    single-turn, near-duplicate prompts across thousands of independent accounts, some of
    them signing up during the scenario."""

    kind: Literal["app_template"]
    name: str = "app-template"
    accounts: int = Field(1500, ge=1)
    templates: int = Field(2, ge=1)
    new_share: Share = 0.3
    sessions_per_day: float = Field(2.0, gt=0.0)
    requests_per_session: float = Field(2.0, ge=1.0)
    user_agent: str = "acme-summarizer/3.1 (chrome-extension)"


Trap = Annotated[
    PopularTool | EnterpriseBatch | LaunchDay | ResearchOrg | Reseller | ClassCohort
    | SsoOnboarding | CronFleet | AppTemplate,
    Field(discriminator="kind"),
]

# -- campaigns (extraction) -------------------------------------------------------------------


class _Campaign(_Window):
    id: str = Field(min_length=1)
    accounts: int = Field(100, ge=1, le=500_000)
    model: str | None = None
    templates: int = Field(20, ge=1)
    bit_flips_min: int = Field(2, ge=0, le=16)
    bit_flips_max: int = Field(6, ge=0, le=16)
    input_tokens_median: float = Field(300.0, gt=0.0)
    output_tokens_median: float = Field(1800.0, gt=0.0)
    max_tokens: int = Field(4096, ge=1)
    max_tokens_share: Share = 0.35
    account_age_days_max: float = Field(14.0, gt=0.0)
    creation_bursts: int = Field(5, ge=1)
    accounts_per_payment: int = Field(50, ge=1)
    asns: int = Field(3, ge=1)
    ips_per_asn: int = Field(40, ge=1)
    user_agents: int = Field(2, ge=1)
    rotation_h: float = Field(24.0, gt=0.0)
    tier: str = "free"

    @model_validator(mode="after")
    def _flips(self) -> _Campaign:
        if self.bit_flips_min > self.bit_flips_max:
            raise ValueError(
                f"bit_flips_min ({self.bit_flips_min}) must be <= bit_flips_max "
                f"({self.bit_flips_max})"
            )
        return self


class Hydra(_Campaign):
    kind: Literal["hydra"]
    accounts: int = Field(2000, ge=1, le=500_000)
    rate_per_account_h: float = Field(1.0, gt=0.0)
    timing_cv: float = Field(0.05, ge=0.0, le=2.0)
    ramp_h: Hours = 0.5
    lifetime_h: float | None = Field(None, gt=0.0)


class Burst(_Campaign):
    kind: Literal["burst"]
    accounts: int = Field(3, ge=1, le=500_000)
    rate_per_account_h: float = Field(600.0, gt=0.0)
    timing_cv: float = Field(0.3, ge=0.0, le=2.0)


class ModelPivot(_Campaign):
    kind: Literal["model_pivot"]
    accounts: int = Field(300, ge=1, le=500_000)
    rate_per_account_h: float = Field(2.0, gt=0.0)
    timing_cv: float = Field(0.1, ge=0.0, le=2.0)
    to_model: str = Field(min_length=1)
    pivot_h: Hours
    pivot_within_h: float = Field(2.0, gt=0.0)


class SlowRamp(_Campaign):
    kind: Literal["slow_ramp"]
    accounts: int = Field(1, ge=1, le=10_000)
    start_rate_h: float = Field(3.0, gt=0.0)
    end_rate_h: float = Field(300.0, gt=0.0)
    timing_cv: float = Field(0.5, ge=0.0, le=2.0)


class Blend(_Campaign):
    kind: Literal["blend"]
    accounts: int = Field(2, ge=1, le=10_000)
    rate_per_account_h: float = Field(40.0, gt=0.0)
    timing_cv: float = Field(0.3, ge=0.0, le=2.0)


class Swarm(_Campaign):
    """Throwaway accounts: each is created shortly before use, sends a handful of templated
    requests within minutes and is abandoned; new ones arrive in waves for the campaign's
    whole span."""

    kind: Literal["swarm"]
    accounts: int = Field(300, ge=1, le=500_000)
    waves_per_day: float = Field(1.0, gt=0.0)
    wave_h: float = Field(3.0, gt=0.0)
    signup_lead_h: float = Field(6.0, ge=0.0, le=24.0)
    signup_spread_h: float = Field(2.0, gt=0.0, le=24.0)
    requests_min: int = Field(2, ge=1)
    requests_max: int = Field(8, ge=1)
    followup_s: float = Field(90.0, gt=0.0)
    accounts_per_payment: int = Field(4, ge=1)
    ips_per_asn: int = Field(20, ge=1)
    max_tokens: int = Field(2048, ge=1)
    max_tokens_share: Share = 0.6
    templates: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _requests(self) -> Swarm:
        if self.requests_min > self.requests_max:
            raise ValueError(
                f"requests_min ({self.requests_min}) must be <= requests_max "
                f"({self.requests_max})"
            )
        return self


class Lockstep(_Campaign):
    """Accounts that act together: every session of the operator's scheduler starts and
    stops all members within ``jitter_s``; each member's volume and content are
    ordinary (diverse prompts, short conversations, home networks)."""

    kind: Literal["lockstep"]
    accounts: int = Field(100, ge=1, le=100_000)
    sessions_per_day: float = Field(2.0, gt=0.0)
    session_min_minutes: float = Field(20.0, gt=0.0)
    session_max_minutes: float = Field(90.0, gt=0.0)
    requests_per_hour: float = Field(20.0, gt=0.0)
    participation: Share = 0.9
    jitter_s: float = Field(15.0, ge=0.0, le=600.0)
    age_days_min: float = Field(20.0, gt=0.0)
    age_days_max: float = Field(400.0, gt=0.0)
    accounts_per_payment: int = Field(1, ge=1)
    tier: str = "pro"

    @model_validator(mode="after")
    def _sessions(self) -> Lockstep:
        if self.session_min_minutes > self.session_max_minutes:
            raise ValueError(
                f"session_min_minutes ({self.session_min_minutes}) must be <= "
                f"session_max_minutes ({self.session_max_minutes})"
            )
        return self


Campaign = Annotated[
    Hydra | Burst | ModelPivot | SlowRamp | Blend | Swarm | Lockstep,
    Field(discriminator="kind"),
]


class Scenario(_Model):
    scenario: ScenarioMeta
    benign: Benign = Benign()
    traps: list[Trap] = Field(default_factory=list)
    campaigns: list[Campaign] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross(self) -> Scenario:
        names = {m.name for m in self.scenario.models}
        dur = self.scenario.duration_h
        for i, c in enumerate(self.campaigns):
            if c.start_h >= dur:
                raise ValueError(
                    f"campaigns.{i}.start_h: must be before scenario.duration_h ({dur}) "
                    f"(got {c.start_h})"
                )
            for fld in ("model", "to_model"):
                m = getattr(c, fld, None)
                if m is not None and m not in names:
                    raise ValueError(
                        f"campaigns.{i}.{fld}: unknown model, expected one of scenario.models "
                        f"{sorted(names)} (got {m!r})"
                    )
            if isinstance(c, Blend) and self.benign.accounts < c.accounts:
                raise ValueError(
                    f"campaigns.{i}.accounts: blend needs that many benign host accounts, "
                    f"benign.accounts is {self.benign.accounts} (got {c.accounts})"
                )
        ids = [c.id for c in self.campaigns]
        if len(set(ids)) != len(ids):
            raise ValueError(f"campaigns: ids must be unique (got {ids})")
        for i, t in enumerate(self.traps):
            if t.start_h >= dur:
                raise ValueError(
                    f"traps.{i}.start_h: must be before scenario.duration_h ({dur}) "
                    f"(got {t.start_h})"
                )
            if isinstance(t, LaunchDay):
                if t.tier not in self.benign.tiers:
                    raise ValueError(
                        f"traps.{i}.tier: unknown tier, expected one of benign.tiers "
                        f"{sorted(self.benign.tiers)} (got {t.tier!r})"
                    )
                if t.new_model is not None and t.new_model not in names:
                    raise ValueError(
                        f"traps.{i}.new_model: unknown model, expected one of scenario.models "
                        f"{sorted(names)} (got {t.new_model!r})"
                    )
        return self

    def end_h(self, start_h: float, duration_h: float | None) -> float:
        """End of a window, clipped to the scenario."""
        end = self.scenario.duration_h if duration_h is None else start_h + duration_h
        return min(end, self.scenario.duration_h)


class ScenarioError(ValueError):
    """A scenario file that is missing, not TOML, or invalid. ``errors`` holds one
    ``field.path: message (got X)`` line per problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"invalid scenario {source}:\n" + "\n".join(f"  {e}" for e in errors))


_KINDS = {"popular_tool", "enterprise_batch", "launch_day", "research_org", "reseller",
          "class_cohort", "sso_onboarding", "cron_fleet", "app_template",
          "hydra", "burst", "model_pivot", "slow_ramp", "blend", "swarm", "lockstep"}


def _format(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        # Drop the union tag pydantic inserts ("campaigns.0.hydra.accounts"): users never
        # write it.
        loc = [str(p) for p in e["loc"] if str(p) not in _KINDS]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (see scenarios/README.md for the valid ones)"
        if msg.split(":", 1)[0].count(".") and not loc:
            out.append(msg)  # a cross-field check that names its own field
            continue
        out.append(f"{'.'.join(loc) or '<scenario>'}: {msg} (got {e.get('input')!r})")
    return out


def scenario_from_dict(data: dict[str, Any], source: str = "<dict>") -> Scenario:
    """Validate a parsed scenario; raise :class:`ScenarioError` naming every bad field."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(source, _format(err)) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a TOML scenario file."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ScenarioError(str(path), ["<file>: file not found"]) from None
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(str(path), [f"<file>: not valid TOML: {err}"]) from None
    return scenario_from_dict(data, str(path))
