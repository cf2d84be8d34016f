"""Turn a scenario and a seed into sorted events plus the labels of every account.

Each population draws from its own random stream (seed, population number), so adding a
campaign to a scenario leaves the benign traffic byte-for-byte unchanged.

>>> from simulator.scenario import scenario_from_dict
>>> s = scenario_from_dict({
...     "scenario": {"name": "t", "start": "2026-01-05T00:00:00Z", "duration_h": 3},
...     "benign": {"accounts": 50},
...     "campaigns": [{"kind": "hydra", "id": "h1", "accounts": 20, "start_h": 1}]})
>>> sim = generate(s, seed=1)
>>> bool((sim.events.ts[1:] >= sim.events.ts[:-1]).all())
True
>>> sim.campaigns[0]["accounts"]
20
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.benign import benign_population
from simulator.campaigns import campaign_traffic
from simulator.coordination import lockstep_traffic, swarm_traffic
from simulator.lookalikes import app_template, class_cohort, cron_fleet, sso_onboarding
from simulator.scenario import (
    AppTemplate,
    ClassCohort,
    CronFleet,
    EnterpriseBatch,
    LaunchDay,
    Lockstep,
    PopularTool,
    ResearchOrg,
    Reseller,
    Scenario,
    SsoOnboarding,
    Swarm,
)
from simulator.tables import Batch, Tables
from simulator.timing import Context
from simulator.traps import enterprise_batch, popular_tool, research_org, reseller

__all__ = ["Simulation", "generate"]


@dataclass
class Simulation:
    """Generated traffic: ``events`` sorted by time, ``tables`` with the ground truth."""

    scenario: Scenario
    seed: int
    t0: float
    t_end: float
    tables: Tables
    events: Batch
    campaigns: list[dict[str, Any]]


def generate(scenario: Scenario, seed: int) -> Simulation:
    ctx = Context(scenario, np.random.default_rng([seed, 0]))
    batches: list[Batch] = []
    launches = [t for t in scenario.traps if isinstance(t, LaunchDay)]
    batches.extend(benign_population(ctx, launches))
    for i, trap in enumerate(scenario.traps, start=1):
        ctx.rng = np.random.default_rng([seed, 1, i])
        if isinstance(trap, PopularTool):
            batches.extend(popular_tool(ctx, trap))
        elif isinstance(trap, EnterpriseBatch):
            batches.extend(enterprise_batch(ctx, trap))
        elif isinstance(trap, ResearchOrg):
            batches.extend(research_org(ctx, trap))
        elif isinstance(trap, Reseller):
            batches.extend(reseller(ctx, trap))
        elif isinstance(trap, ClassCohort):
            batches.extend(class_cohort(ctx, trap))
        elif isinstance(trap, SsoOnboarding):
            batches.extend(sso_onboarding(ctx, trap))
        elif isinstance(trap, CronFleet):
            batches.extend(cron_fleet(ctx, trap))
        elif isinstance(trap, AppTemplate):
            batches.extend(app_template(ctx, trap))
    campaigns = []
    for i, c in enumerate(scenario.campaigns, start=1):
        ctx.rng = np.random.default_rng([seed, 2, i])
        so_far = np.concatenate([b.acct for b in batches] or [np.zeros(0, dtype=np.int64)])
        counts = np.bincount(so_far.astype(np.int64), minlength=ctx.tables.n_accounts)
        end_h = scenario.end_h(c.start_h, c.duration_h)
        if isinstance(c, Swarm):
            b = swarm_traffic(ctx, c, end_h)
        elif isinstance(c, Lockstep):
            b = lockstep_traffic(ctx, c, end_h)
        else:
            b = campaign_traffic(ctx, c, counts)
        batches.append(b)
        campaigns.append({
            "campaign_id": c.id,
            "kind": c.kind,
            "start_ts": round(float(ctx.ts(c.start_h)), 3),
            "end_ts": round(float(ctx.ts(end_h)), 3),
            "accounts": int(sum(1 for x in ctx.tables.campaign if x == c.id)),
            "requests": len(b),
        })
    ev = Batch.concat(batches)
    inside = np.nonzero((ev.ts >= ctx.t0) & (ev.ts < ctx.t_end))[0]
    ev = ev.take(inside[np.argsort(ev.ts[inside], kind="stable")])
    ctx.rng = np.random.default_rng([seed, 3])
    ctx.tables.account_key = ctx.rng.permutation(
        np.unique(ctx.rng.integers(1 << 40, 1 << 48, size=ctx.tables.n_accounts * 2))
    )[: ctx.tables.n_accounts].tolist()
    return Simulation(scenario, seed, ctx.t0, ctx.t_end, ctx.tables, ev, campaigns)
