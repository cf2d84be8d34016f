"""Extraction campaigns: hydra, burst, model pivot, slow ramp and blend.

What they share is in :func:`_extraction`: templated prompts (near-duplicate SimHash
fingerprints), long chain-of-thought outputs with frequent ``max_tokens`` stops,
single-turn requests, and infrastructure rotated from small pools (payment fingerprints,
cloud ASNs and addresses, user agents)."""

from __future__ import annotations

import math

import numpy as np

from simulator.benign import assemble
from simulator.content import cloud_nets, flip_bits, random_u64
from simulator.scenario import Blend, Burst, Hydra, ModelPivot, SlowRamp, _Campaign
from simulator.tables import HUMAN_UAS, Batch, hex_ids
from simulator.timing import Context, poisson_cells, scripted_arrivals

__all__ = ["campaign_traffic"]

# Agents a campaign hides behind: the most common SDK strings, so a UA alone never tells.
_CAMPAIGN_UAS = (*HUMAN_UAS[:4], "python-httpx/0.28.1", "aiohttp/3.10.10", "OpenAI/Python 1.55.0")


def _created(ctx: Context, c: _Campaign, n: int, start_h: float) -> np.ndarray:
    """Accounts opened in ``creation_bursts`` bursts of a few minutes, days before use."""
    rng = ctx.rng
    lo = ctx.ts(start_h) - c.account_age_days_max * 86400.0
    bursts = np.sort(rng.uniform(lo, ctx.ts(start_h) - 1800.0, size=c.creation_bursts))
    which = np.minimum((np.arange(n) * c.creation_bursts) // max(n, 1), c.creation_bursts - 1)
    return bursts[which] + rng.uniform(0.0, 900.0, size=n)


def _extraction(
    ctx: Context,
    c: _Campaign,
    rows: np.ndarray,
    slot: np.ndarray,
    ts: np.ndarray,
    model: np.ndarray | int,
) -> Batch:
    """Columns for campaign requests by account ``rows[slot]`` at ``ts``."""
    rng = ctx.rng
    m = len(ts)
    n_nets = c.asns * c.ips_per_asn
    nets = cloud_nets(rng, ctx.tables, c.asns, c.ips_per_asn, country="US")
    uas = np.array([ctx.tables.ua(u) for u in _CAMPAIGN_UAS[: c.user_agents]]
                   + [ctx.tables.ua(f"python-httpx/0.{20 + i}.0")
                      for i in range(max(0, c.user_agents - len(_CAMPAIGN_UAS)))])
    # Rotation: every rotation_h each account moves to the next address and agent.
    epoch = np.floor((ts - ctx.ts(c.start_h)) / (c.rotation_h * 3600.0)).astype(np.int64)
    net = nets[(slot * 7 + epoch) % n_nets]
    ua = uas[(slot + epoch) % len(uas)]
    templates = random_u64(rng, c.templates)
    out = np.rint(rng.lognormal(np.log(c.output_tokens_median), 0.45, size=m)).astype(np.int64)
    inp = np.rint(rng.lognormal(np.log(c.input_tokens_median), 0.3, size=m)).astype(np.int64)
    return assemble(
        ctx, rows[slot], ts, model=model, inp=inp, out=out, conv=ctx.convs(m), turn=1,
        sysfp=-1, pfp=flip_bits(rng, templates[rng.integers(0, c.templates, m)], c.bit_flips_max,
                     c.bit_flips_min),
        net=net, ua=ua, rate_limited_share=0.004, error_share=0.003,
        max_tokens_share=c.max_tokens_share, max_tokens=c.max_tokens,
    )


def _new_accounts(ctx: Context, c: _Campaign, created: np.ndarray) -> np.ndarray:
    n = len(created)
    pool = hex_ids(ctx.rng, math.ceil(n / c.accounts_per_payment))
    payment = pool[ctx.rng.permutation(n) // c.accounts_per_payment]
    return ctx.tables.add_accounts(
        n, created=created, tier=c.tier, population=f"campaign:{c.kind}",  # type: ignore[attr-defined]
        campaign=c.id, payment=payment,
    )


def _hydra(ctx: Context, c: Hydra, h1: float) -> Batch:
    n = c.accounts
    slot_start = c.start_h + c.ramp_h * ctx.rng.permutation(n) / max(n, 1)
    slot, ts = scripted_arrivals(ctx, n, c.rate_per_account_h, c.start_h, h1, c.timing_cv,
                                 slot_start_h=slot_start)
    if c.lifetime_h is None:
        rows = _new_accounts(ctx, c, _created(ctx, c, n, c.start_h))
        return _extraction(ctx, c, rows, slot, ts, ctx.model_index(c.model))
    # Banned or abandoned accounts are replaced: slot s, generation g is a fresh account.
    gens = int(np.ceil((h1 - c.start_h) / c.lifetime_h)) + 1
    g = np.floor((ts - ctx.ts(slot_start[slot])) / (c.lifetime_h * 3600.0)).astype(np.int64)
    cand = slot * gens + g
    used, inverse = np.unique(cand, return_inverse=True)
    us, ug = used // gens, used % gens
    created = _created(ctx, c, len(used), c.start_h)
    later = ug > 0
    gen_start = slot_start[us] + ug * c.lifetime_h
    created[later] = ctx.ts(gen_start[later]) - ctx.rng.uniform(1800.0, 86400.0, int(later.sum()))
    rows = _new_accounts(ctx, c, created)
    return _extraction(ctx, c, rows, inverse, ts, ctx.model_index(c.model))


def _burst(ctx: Context, c: Burst, h1: float) -> Batch:
    slot, ts = scripted_arrivals(ctx, c.accounts, c.rate_per_account_h, c.start_h, h1,
                                 c.timing_cv)
    rows = _new_accounts(ctx, c, _created(ctx, c, c.accounts, c.start_h))
    return _extraction(ctx, c, rows, slot, ts, ctx.model_index(c.model))


def _pivot(ctx: Context, c: ModelPivot, h1: float) -> Batch:
    slot, ts = scripted_arrivals(ctx, c.accounts, c.rate_per_account_h, c.start_h, h1,
                                 c.timing_cv)
    rows = _new_accounts(ctx, c, _created(ctx, c, c.accounts, c.start_h))
    moved = np.clip((ts - ctx.ts(c.pivot_h)) / (c.pivot_within_h * 3600.0), 0.0, 1.0)
    model = np.where(ctx.rng.random(len(ts)) < moved, ctx.model_index(c.to_model),
                     ctx.model_index(c.model))
    return _extraction(ctx, c, rows, slot, ts, model)


def _ramp(ctx: Context, c: SlowRamp, h1: float) -> Batch:
    span = max(h1 - c.start_h, 1e-9)
    growth = np.log(c.end_rate_h / c.start_rate_h) / span

    def lam(pos: np.ndarray, hours: np.ndarray) -> np.ndarray:
        mid = np.clip(hours + 0.5 - c.start_h, 0.0, span)
        return np.broadcast_to(c.start_rate_h * np.exp(growth * mid), (len(pos), len(hours)))

    slot, t = poisson_cells(ctx, lam, c.accounts, c.start_h, h1)
    rows = _new_accounts(ctx, c, _created(ctx, c, c.accounts, c.start_h))
    return _extraction(ctx, c, rows, slot, ctx.ts(t), ctx.model_index(c.model))


def _blend(ctx: Context, c: Blend, h1: float, hosts: np.ndarray) -> Batch:
    """Extraction through real customers' accounts: the hosts keep their own traffic and
    history; they are relabelled as campaign accounts."""
    for r in hosts.tolist():
        ctx.tables.campaign[r] = c.id
        ctx.tables.population[r] = f"campaign:{c.kind}"
    slot, ts = scripted_arrivals(ctx, c.accounts, c.rate_per_account_h, c.start_h, h1,
                                 c.timing_cv)
    return _extraction(ctx, c, hosts, slot, ts, ctx.model_index(c.model))


def campaign_traffic(ctx: Context, c: _Campaign, benign_counts: np.ndarray) -> Batch:
    """All requests of campaign ``c``. ``benign_counts`` holds the event count per account
    row so far (blend picks moderately active customers as hosts)."""
    h1 = ctx.scenario.end_h(c.start_h, c.duration_h)
    if isinstance(c, Hydra):
        return _hydra(ctx, c, h1)
    if isinstance(c, Burst):
        return _burst(ctx, c, h1)
    if isinstance(c, ModelPivot):
        return _pivot(ctx, c, h1)
    if isinstance(c, SlowRamp):
        return _ramp(ctx, c, h1)
    assert isinstance(c, Blend)
    benign = np.nonzero(
        (np.array(ctx.tables.population) == "benign")[: len(benign_counts)] & (benign_counts > 0)
    )[0]
    lo, hi = np.quantile(benign_counts[benign], [0.5, 0.95]) if len(benign) else (0, 0)
    pool = benign[(benign_counts[benign] >= lo) & (benign_counts[benign] <= hi)]
    if len(pool) < c.accounts:
        pool = benign
    hosts = ctx.rng.choice(pool, size=c.accounts, replace=False)
    return _blend(ctx, c, h1, np.sort(hosts))
