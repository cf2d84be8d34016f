"""Coordinated campaigns that no single account gives away: throwaway swarms and lockstep
groups.

A **swarm** opens fresh accounts in waves (signup farming): each is created a few hours
before its use, sends a handful of templated requests within minutes, answers cut at
``max_tokens``, and is never used again; cards are shared in small cells and the traffic
comes from proxy pools in a few hosting ASNs. A **lockstep** group is a set of established
accounts whose activity starts and stops in the same minutes, session after session, day
after day, while each member's volume and content look ordinary.
"""

from __future__ import annotations

import numpy as np

from simulator.benign import assemble, random_ages
from simulator.campaigns import _extraction, _new_accounts
from simulator.content import random_u64, residential_nets, token_draw
from simulator.scenario import Lockstep, Swarm
from simulator.tables import COUNTRIES, HUMAN_UAS, Batch, hex_ids
from simulator.timing import Context

__all__ = ["lockstep_traffic", "swarm_traffic"]


def _waves(ctx: Context, c: Swarm, h1: float) -> np.ndarray:
    """Start hour of each wave: one per ``1 / waves_per_day`` days, at a random point of its
    slot (an operator runs its farm when it likes)."""
    span = max(h1 - c.start_h, 1e-9)
    n = max(1, round(span / 24.0 * c.waves_per_day))
    slot = span / n
    free = max(0.0, slot - c.wave_h)
    starts = c.start_h + np.arange(n) * slot + ctx.rng.uniform(0.0, free, size=n)
    # The first wave opens the campaign: its start is the campaign's start.
    starts[0] = c.start_h
    return starts


def swarm_traffic(ctx: Context, c: Swarm, h1: float) -> Batch:
    """All requests of swarm ``c`` (scenario hours ``c.start_h`` to ``h1``)."""
    rng, n = ctx.rng, c.accounts
    waves = _waves(ctx, c, h1)
    wave_of = rng.permutation(n) % len(waves)
    w0 = waves[wave_of]
    w1 = np.minimum(w0 + c.wave_h, h1)
    first_h = w0 + rng.random(n) * (w1 - w0)
    # Accounts of one wave are opened in one signup burst, hours before the wave.
    signup = ctx.ts(waves - c.signup_lead_h)[wave_of]
    created = np.minimum(signup + rng.uniform(0.0, c.signup_spread_h * 3600.0, size=n),
                         ctx.ts(first_h) - 60.0)
    rows = _new_accounts(ctx, c, created)
    k = rng.integers(c.requests_min, c.requests_max + 1, size=n)
    slot = np.repeat(np.arange(n), k)
    first = np.cumsum(k) - k
    gaps = rng.lognormal(np.log(c.followup_s), 0.6, size=int(k.sum()))
    gaps[first] = 0.0
    cum = np.cumsum(gaps)
    offset = cum - np.repeat(cum[first], k)
    ts = ctx.ts(first_h)[slot] + offset
    keep = ts < ctx.ts(h1)
    return _extraction(ctx, c, rows, slot[keep], ts[keep], ctx.model_index(c.model))


def _sessions(ctx: Context, c: Lockstep, h1: float) -> list[tuple[float, float]]:
    """The scheduler's sessions as (start, end) epoch seconds: a Poisson number per day at
    random times, each lasting between the minimum and maximum length."""
    rng = ctx.rng
    out = []
    day = c.start_h
    while day < h1:
        end_day = min(day + 24.0, h1)
        k = max(1, int(rng.poisson(c.sessions_per_day * (end_day - day) / 24.0)))
        for s in np.sort(rng.uniform(day, end_day, size=k)).tolist():
            length = rng.uniform(c.session_min_minutes, c.session_max_minutes) * 60.0
            t0 = float(ctx.ts(s))
            out.append((t0, min(t0 + length, float(ctx.ts(h1)))))
        day = end_day
    # The first session opens the campaign.
    if out:
        length = out[0][1] - out[0][0]
        t0 = float(ctx.ts(c.start_h))
        out[0] = (t0, t0 + length)
    return out


def lockstep_traffic(ctx: Context, c: Lockstep, h1: float) -> Batch:
    """All requests of lockstep group ``c``."""
    rng, n = ctx.rng, c.accounts
    pool = hex_ids(rng, -(-n // c.accounts_per_payment))
    payment = pool[rng.permutation(n) // c.accounts_per_payment]
    rows = ctx.tables.add_accounts(
        n, created=random_ages(ctx, n, c.age_days_min, c.age_days_max), tier=c.tier,
        population=f"campaign:{c.kind}", campaign=c.id, payment=payment,
    )
    home = residential_nets(rng, ctx.tables, n, rng.choice(COUNTRIES, size=n).tolist())
    ua_rows = np.array([ctx.tables.ua(u) for u in HUMAN_UAS[:8]])
    ua = ua_rows[rng.integers(0, len(ua_rows), size=n)]
    slots, times = [], []
    jitter = c.jitter_s
    for t0, t1 in _sessions(ctx, c, h1):
        on = np.nonzero(rng.random(n) < c.participation)[0]
        if len(on) == 0 or t1 - t0 <= 2 * jitter:
            continue
        # Each member: first request within jitter of the start, last within jitter of the
        # end, an ordinary Poisson number in between.
        m = rng.poisson(c.requests_per_hour * (t1 - t0) / 3600.0, size=len(on))
        k = np.maximum(m, 2)
        s = np.repeat(on, k)
        lo, hi = t0 + jitter, t1 - jitter
        t = lo + rng.random(len(s)) * (hi - lo)
        first = np.cumsum(k) - k
        t[first] = t0 + rng.random(len(on)) * jitter
        t[first + 1] = t1 - rng.random(len(on)) * jitter
        slots.append(s)
        times.append(t)
    if not slots:
        return Batch.concat([])
    slot, ts = np.concatenate(slots), np.concatenate(times)
    order = np.lexsort((ts, slot))
    slot, ts = slot[order], ts[order]
    m = len(ts)
    # Short conversations of consecutive requests: ordinary chat use.
    idx = np.arange(m) - np.searchsorted(slot, slot)
    turn = idx % 3 + 1
    conv0 = ctx.convs(m)
    conv = conv0[idx - (idx % 3) + np.searchsorted(slot, slot)]
    return assemble(
        ctx, rows[slot], ts, model=np.full(m, ctx.model_index(c.model)),
        inp=token_draw(rng, m, "input") + (turn - 1) * rng.integers(50, 400, size=m),
        out=token_draw(rng, m, "output"), conv=conv, turn=turn, sysfp=-1,
        pfp=random_u64(rng, m), net=home[slot], ua=ua[slot], rate_limited_share=0.01,
        max_tokens_share=0.02,
    )
