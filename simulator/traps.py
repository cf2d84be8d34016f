"""Benign look-alikes: legitimate traffic that shares one or more traits with extraction.
Each is usable alone; they are labelled benign (``population`` names the trap)."""

from __future__ import annotations

import numpy as np

from simulator.benign import assemble, model_mix, random_ages
from simulator.content import cloud_nets, flip_bits, random_u64, residential_nets, token_draw
from simulator.scenario import EnterpriseBatch, PopularTool, ResearchOrg, Reseller
from simulator.tables import COUNTRIES, Batch, hex_ids
from simulator.timing import Context, app_arrivals, scripted_arrivals, session_arrivals

__all__ = ["enterprise_batch", "popular_tool", "research_org", "reseller"]


def _old(ctx: Context, n: int) -> np.ndarray:
    return random_ages(ctx, n, 200.0, 1500.0)


def popular_tool(ctx: Context, t: PopularTool) -> list[Batch]:
    """Thousands of independent users of one coding tool: one shared system prompt and user
    agent, diverse prompts, human timing and home networks, long multi-turn contexts."""
    rng, n = ctx.rng, t.accounts
    tiers = rng.choice(np.array(["free", "pro", "enterprise"]), size=n, p=[0.3, 0.6, 0.1])
    rows = ctx.tables.add_accounts(
        n, created=random_ages(ctx, n, 1.0, 900.0), tier=tiers.tolist(),
        population=f"trap:{t.name}", payment=np.where(tiers != "free", hex_ids(rng, n), -1),
    )
    tz = rng.choice(np.array([-8.0, -5.0, 0.0, 1.0, 5.5, 8.0]), size=n)
    home = residential_nets(rng, ctx.tables, n, rng.choice(COUNTRIES, size=n).tolist())
    sysfp = int(ctx.tables.add_sysfps(random_u64(rng, 1))[0])
    h1 = ctx.scenario.end_h(t.start_h, t.duration_h)
    spd = t.sessions_per_day * np.exp(rng.normal(0.0, 1.0, size=n))
    pos, ts, conv, turn = session_arrivals(
        ctx, tz, spd, turns_mean=t.turns_mean, think_time_s=30.0, h0=t.start_h, h1=h1
    )
    m = len(ts)
    preferred = np.full(n, ctx.model_index(None))
    return [assemble(
        ctx, rows[pos], ts, model=model_mix(ctx, ts, preferred[pos]),
        inp=token_draw(rng, m, "input", 5.0) + turn * rng.integers(200, 800, size=m),
        out=token_draw(rng, m, "output", 1.5), conv=conv, turn=turn, sysfp=sysfp,
        pfp=random_u64(rng, m), net=home[pos], ua=ctx.tables.ua(t.user_agent),
        rate_limited_share=0.02, max_tokens_share=0.03, tool_use_share=0.3,
    )]


def enterprise_batch(ctx: Context, t: EnterpriseBatch) -> list[Batch]:
    """An established enterprise account with steady daytime traffic that fires
    ``multiplier`` times harder for ``batch_h`` every night: scripted timing, templated
    prompts, one system prompt — an extraction look-alike with a long clean history."""
    rng, n = ctx.rng, t.accounts
    org = hex_ids(rng, 1)[0]
    rows = ctx.tables.add_accounts(
        n, created=_old(ctx, n), tier="enterprise", population=f"trap:{t.name}",
        org=np.full(n, org), payment=np.full(n, hex_ids(rng, 1)[0]),
    )
    nets = cloud_nets(rng, ctx.tables, 1, 8)
    sysfp = int(ctx.tables.add_sysfps(random_u64(rng, 1))[0])
    ua = ctx.tables.ua("acme-etl/5.2 python-httpx/0.27.0")
    templates = random_u64(rng, 6)
    h0, h1 = t.start_h, ctx.scenario.end_h(t.start_h, t.duration_h)
    pos, ts = app_arrivals(
        ctx, np.zeros(n), np.full(n, t.requests_per_hour), np.full(n, 1.0), h0=h0, h1=h1
    )
    slots, bts = [pos], [ts]
    start_utc = ctx.scenario.scenario.start
    first = t.batch_hour_utc - (start_utc.hour + start_utc.minute / 60.0)
    day = np.floor((h0 - first) / 24.0)
    while first + day * 24.0 < h1:
        b0 = first + day * 24.0
        b1 = min(b0 + t.batch_h, h1)
        if b1 > h0:
            s, bt = scripted_arrivals(
                ctx, n, t.requests_per_hour * t.multiplier, max(b0, h0), b1, 0.15
            )
            slots.append(s)
            bts.append(bt)
        day += 1
    pos, ts = np.concatenate(slots), np.concatenate(bts)
    m = len(ts)
    return [assemble(
        ctx, rows[pos], ts, model=np.full(m, ctx.model_index(None)),
        inp=token_draw(rng, m, "input", 3.0), out=token_draw(rng, m, "output", 2.0),
        conv=-1, turn=0, sysfp=sysfp, pfp=flip_bits(rng, templates[rng.integers(0, 6, m)], 3),
        net=nets[rng.integers(0, len(nets), m)], ua=ua, rate_limited_share=0.003,
        max_tokens_share=0.05,
    )]


def research_org(ctx: Context, t: ResearchOrg) -> list[Batch]:
    """One research org, ``keys`` accounts under one org and card, running evaluation
    harnesses: synchronised runs of a few hours, benchmark templates, long chain-of-thought
    answers that often hit max_tokens, single-turn, from the same cloud servers."""
    rng, n = ctx.rng, t.keys
    org = hex_ids(rng, 1)[0]
    rows = ctx.tables.add_accounts(
        n, created=_old(ctx, n), tier="enterprise", population=f"trap:{t.name}",
        org=np.full(n, org), payment=np.full(n, hex_ids(rng, 1)[0]),
    )
    nets = cloud_nets(rng, ctx.tables, 1, 6)
    ua = ctx.tables.ua("lm-eval-harness/0.4.5 python-httpx/0.27.0")
    benchmarks = random_u64(rng, 12)
    h0, h1 = t.start_h, ctx.scenario.end_h(t.start_h, t.duration_h)
    n_runs = max(1, int(rng.poisson(t.runs_per_day * (h1 - h0) / 24.0)))
    starts = np.sort(rng.uniform(h0, max(h0, h1 - t.run_h * 0.5), size=n_runs))
    slots, bts, bench = [], [], []
    for r0 in starts.tolist():
        s, bt = scripted_arrivals(ctx, n, t.requests_per_key_hour, r0, min(r0 + t.run_h, h1), 0.3)
        slots.append(s)
        bts.append(bt)
        bench.append(np.full(len(s), rng.integers(0, len(benchmarks))))
    if not slots:
        return []
    pos, ts, b = np.concatenate(slots), np.concatenate(bts), np.concatenate(bench)
    m = len(ts)
    return [assemble(
        ctx, rows[pos], ts, model=np.full(m, ctx.model_index(None)),
        inp=token_draw(rng, m, "input", 1.2), out=token_draw(rng, m, "output", 4.0),
        conv=-1, turn=0, sysfp=-1, pfp=flip_bits(rng, benchmarks[b], 8),
        net=nets[rng.integers(0, len(nets), m)], ua=ua, rate_limited_share=0.01,
        max_tokens_share=t.max_tokens_share, max_tokens=2048,
    )]


def reseller(ctx: Context, t: Reseller) -> list[Batch]:
    """A reseller relaying many tenants' legitimate traffic through one account: high, smooth
    volume, hundreds of tenant system prompts, diverse prompts, multi-turn, cloud egress."""
    rng, n = ctx.rng, t.accounts
    rows = ctx.tables.add_accounts(
        n, created=_old(ctx, n), tier="enterprise", population=f"trap:{t.name}",
        payment=hex_ids(rng, n),
    )
    nets = cloud_nets(rng, ctx.tables, 2, 10)
    ua = ctx.tables.ua("relay-gateway/2.3 (+https://example.net)")
    tenant_sys = ctx.tables.add_sysfps(random_u64(rng, t.tenants))
    w = 1.0 / np.arange(1, t.tenants + 1)
    h0, h1 = t.start_h, ctx.scenario.end_h(t.start_h, t.duration_h)
    tenant_tz = rng.choice(np.array([-8.0, -5.0, 0.0, 1.0, 8.0]), size=t.tenants)
    tenant = rng.choice(t.tenants, size=n * 64, p=w / w.sum()).reshape(n, 64)
    # Each account relays a mix of tenants: many users in a conversation process.
    spd = np.full(n, t.requests_per_hour * 24.0 / 3.0)
    tz = tenant_tz[tenant[:, 0]]
    pos, ts, conv, turn = session_arrivals(
        ctx, tz, spd, turns_mean=3.0, think_time_s=40.0, h0=h0, h1=h1
    )
    m = len(ts)
    ten = tenant[pos, rng.integers(0, 64, size=m)]
    # A whole conversation belongs to one tenant.
    _, first_of_conv, inverse = np.unique(conv, return_index=True, return_inverse=True)
    ten = ten[first_of_conv][inverse]
    return [assemble(
        ctx, rows[pos], ts, model=model_mix(ctx, ts, np.full(m, ctx.model_index(None))),
        inp=token_draw(rng, m, "input") + (turn - 1) * 200, out=token_draw(rng, m, "output"),
        conv=conv, turn=turn, sysfp=tenant_sys[ten], pfp=random_u64(rng, m),
        net=nets[rng.integers(0, len(nets), m)], ua=ua, rate_limited_share=0.005,
    )]
