"""The benign population: accounts per tier, human users in conversations and backend
apps, heavy-tailed activity, local daily and weekly cycles, calibrated tokens, realistic
failures, ages from days to years, varied networks, agents and payment."""

from __future__ import annotations

import numpy as np

from simulator.calibrate import load_calibration
from simulator.content import (
    cloud_nets,
    flip_bits,
    latency_ms,
    outcomes,
    random_u64,
    residential_nets,
    token_draw,
)
from simulator.scenario import LaunchDay
from simulator.tables import COUNTRY_BY_TZ, HUMAN_UAS, Batch, hex_ids
from simulator.timing import Context, RateHook, app_arrivals, session_arrivals

__all__ = ["assemble", "benign_population", "model_mix", "random_ages"]


def random_ages(ctx: Context, n: int, lo_days: float, hi_days: float) -> np.ndarray:
    """Creation times with log-uniform ages between ``lo_days`` and ``hi_days``."""
    age = np.exp(ctx.rng.uniform(np.log(lo_days), np.log(max(hi_days, lo_days)), size=n))
    return ctx.t0 - age * 86400.0


def model_mix(ctx: Context, ts: np.ndarray, preferred: np.ndarray) -> np.ndarray:
    """Benign model choice: mostly the account's preferred model, some exploring; models
    released during the scenario are adopted gradually after their release."""
    models = ctx.scenario.scenario.models
    rng = ctx.rng
    base = np.array([m.share if m.released_h is None else 0.0 for m in models])
    if base.sum() <= 0:
        base = np.ones(len(models))
    explore = rng.choice(len(models), size=len(ts), p=base / base.sum())
    out = np.where(rng.random(len(ts)) < 0.8, preferred, explore)
    for i, m in enumerate(models):
        if m.released_h is None:
            continue
        since = (ts - ctx.ts(m.released_h)) / 3600.0
        # Zero before the release: nobody uses a model before it exists.
        p = m.adoption_share * np.clip(since / m.adoption_h, 0.0, 1.0)
        out = np.where(rng.random(len(ts)) < p, i, out)
    return out


def assemble(
    ctx: Context,
    acct: np.ndarray,
    ts: np.ndarray,
    *,
    model: np.ndarray,
    inp: np.ndarray,
    out: np.ndarray,
    conv: np.ndarray,
    turn: np.ndarray,
    sysfp: np.ndarray,
    pfp: np.ndarray,
    net: np.ndarray,
    ua: np.ndarray,
    key: np.ndarray | int = 0,
    rate_limited_share: float | np.ndarray = 0.01,
    error_share: float = 0.005,
    max_tokens_share: float = 0.02,
    max_tokens: int | np.ndarray = 4096,
    tool_use_share: float = 0.0,
) -> Batch:
    """Finish a population's columns: outcomes, latency, dtypes."""
    n = len(ts)
    rl = np.broadcast_to(np.asarray(rate_limited_share, dtype=float), (n,))
    # Outcome draws take one scalar share; per-event shares are applied here.
    status, stop, out = outcomes(
        ctx.rng, n, out, rate_limited_share=0.0, error_share=error_share,
        max_tokens_share=max_tokens_share, max_tokens=max_tokens, tool_use_share=tool_use_share,
    )
    limited = ctx.rng.random(n) < rl
    status = np.where(limited, 429, status)
    stop = np.where(limited, -1, stop)
    out = np.where(limited, 0, out)
    lat = np.where(status == 200, latency_ms(ctx.rng, inp, out), ctx.rng.uniform(20, 200, n))

    # Caps match the writer's digit widths (simulator/writer.py).
    cols = {"ts": ts, "acct": acct, "model": model, "inp": np.minimum(inp, 9_999_999),
            "out": np.minimum(out, 9_999_999), "status": status, "stop": stop,
            "latency": np.minimum(lat, 9_999_999), "conv": conv, "turn": np.minimum(turn, 999),
            "sysfp": sysfp, "pfp": pfp, "net": net, "ua": ua,
            "key": key}
    return Batch(**{
        c: np.broadcast_to(np.asarray(v).astype(Batch.DTYPES[c], copy=False), (n,)).copy()
        for c, v in cols.items()
    })


def _launch_models(
    ctx: Context, tiers: np.ndarray, ts: np.ndarray, model: np.ndarray, traps: list[LaunchDay]
) -> np.ndarray:
    """During a launch, ``new_model_share`` of the launched tier's requests use the new model."""
    for t in traps:
        if t.new_model is None:
            continue
        end = ctx.scenario.end_h(t.start_h, t.duration_h)
        on = (tiers == t.tier) & (ts >= ctx.ts(t.start_h)) & (ts < ctx.ts(end))
        on &= ctx.rng.random(len(ts)) < t.new_model_share
        model = np.where(on, ctx.model_index(t.new_model), model)
    return model


def _launch_hook(ctx: Context, tiers: np.ndarray, traps: list[LaunchDay]) -> RateHook | None:
    if not traps:
        return None

    def hook(pos: np.ndarray, hours: np.ndarray) -> np.ndarray:
        f = np.ones((len(pos), len(hours)))
        for t in traps:
            end = ctx.scenario.end_h(t.start_h, t.duration_h)
            on = (hours + 1 > t.start_h) & (hours < end)
            f[np.ix_(tiers[pos] == t.tier, on)] *= t.multiplier
        return f

    return hook


def benign_population(ctx: Context, launches: list[LaunchDay]) -> list[Batch]:
    """Every benign account of ``[benign]``, with launch-day multipliers applied."""
    spec = ctx.scenario.benign
    n = spec.accounts
    if n == 0:
        return []
    rng = ctx.rng
    cal = load_calibration()
    tier_names = list(spec.tiers)
    tier_w = np.array([spec.tiers[t].share for t in tier_names])
    tier_i = rng.choice(len(tier_names), size=n, p=tier_w / tier_w.sum())
    tiers = np.array(tier_names)[tier_i]
    tz_keys = list(spec.timezones)
    tz_w = np.array([spec.timezones[k] for k in tz_keys])
    tz_pick = rng.choice(len(tz_keys), size=n, p=tz_w / tz_w.sum())
    tz = np.array([float(k) for k in tz_keys])[tz_pick]
    app = rng.random(n) < np.array([spec.tiers[t].app_share for t in tier_names])[tier_i]
    scale = np.array([spec.tiers[t].rate_scale for t in tier_names])[tier_i]
    sigma = spec.rate_log_sigma
    if sigma is None:
        sigma = cal["servegen"]["rate_log_sigma"]
    # Heavy tail: per-account activity is log-normal with the spread of ServeGen's clients,
    # capped at the busiest client's multiple of the median client (the trace has 162
    # clients; an uncapped log-normal over 100k accounts would invent far busier ones).
    q = cal["servegen"]["rate_rps_quantiles"]
    cap = q[-1] / q[len(q) // 2]
    activity = np.minimum(np.exp(rng.normal(0.0, sigma, size=n)), cap)
    paid = tiers != "free"
    payment = np.where(paid, hex_ids(rng, n), -1)
    rows = ctx.tables.add_accounts(
        n, created=random_ages(ctx, n, spec.age_days_min, spec.age_days_max),
        tier=tiers.tolist(), population="benign", payment=payment,
    )
    countries = [COUNTRY_BY_TZ.get(z, "US") for z in tz.tolist()]
    home = residential_nets(rng, ctx.tables, n, countries)
    alt = residential_nets(rng, ctx.tables, n, countries)
    servers = cloud_nets(rng, ctx.tables, max(1, n // 50), 20)
    app_net = servers[rng.integers(0, len(servers), size=n)]
    home = np.where(app, app_net, home)
    ua_w = 1.0 / np.arange(1, len(HUMAN_UAS) + 1) ** 0.8
    ua_rows = np.array([ctx.tables.ua(u) for u in HUMAN_UAS])
    ua = ua_rows[rng.choice(len(HUMAN_UAS), size=n, p=ua_w / ua_w.sum())]
    has_sys = rng.random(n) < np.where(app, 0.9, spec.system_prompt_share)
    sysfp = np.where(has_sys, ctx.tables.add_sysfps(random_u64(rng, n)), -1)
    models = ctx.scenario.scenario.models
    base = np.array([m.share if m.released_h is None else 0.0 for m in models])
    base = base if base.sum() > 0 else np.ones(len(models))
    preferred = rng.choice(len(models), size=n, p=base / base.sum())
    rl = np.array([spec.tiers[t].rate_limited_share for t in tier_names])[tier_i]
    err = float(np.mean([t.error_share for t in spec.tiers.values()]))
    keys = rng.integers(1, 4, size=n)
    hook = _launch_hook(ctx, tiers, launches)
    batches = []

    # Humans: conversations.
    hum = np.nonzero(~app)[0]
    if len(hum):
        pos, ts, conv, turn = session_arrivals(
            ctx, tz[hum], spec.sessions_per_day * scale[hum] * activity[hum],
            turns_mean=spec.turns_mean, think_time_s=spec.think_time_s,
            hook=None if hook is None else (lambda p, h: hook(hum[p], h)),
        )
        a = hum[pos]
        m = len(ts)
        # Context grows with the conversation.
        inp = token_draw(rng, m, "input") + (turn - 1) * rng.integers(50, 400, size=m)
        model = _launch_models(ctx, tiers[a], ts, model_mix(ctx, ts, preferred[a]), launches)
        batches.append(assemble(
            ctx, rows[a], ts, model=model, inp=inp,
            out=token_draw(rng, m, "output"), conv=conv, turn=turn, sysfp=sysfp[a],
            pfp=random_u64(rng, m), net=np.where(rng.random(m) < 0.85, home[a], alt[a]),
            ua=ua[a], key=rng.integers(0, keys[a]), rate_limited_share=rl[a], error_share=err,
            max_tokens_share=spec.max_tokens_share,
        ))

    # Apps: steady, machine-driven, some with templated prompts (benign near-duplicates).
    ap = np.nonzero(app)[0]
    if len(ap):
        cvq = np.asarray(cal["servegen"]["interarrival_cv_quantiles"])
        cv = np.clip(np.interp(rng.random(len(ap)), np.linspace(0, 1, len(cvq)), cvq), 0.3, 4.0)
        pos, ts = app_arrivals(
            ctx, tz[ap], spec.app_requests_per_hour * scale[ap] * activity[ap], cv,
            hook=None if hook is None else (lambda p, h: hook(ap[p], h)),
        )
        a = ap[pos]
        m = len(ts)
        templated = (rng.random(len(ap)) < 0.3)[pos]
        tmpl = random_u64(rng, len(ap) * 4).reshape(len(ap), 4)
        pfp = np.where(
            templated,
            flip_bits(rng, tmpl[pos, rng.integers(0, 4, size=m)], 3),
            random_u64(rng, m),
        )
        model = _launch_models(ctx, tiers[a], ts, model_mix(ctx, ts, preferred[a]), launches)
        batches.append(assemble(
            ctx, rows[a], ts, model=model, inp=token_draw(rng, m, "input", 1.5),
            out=token_draw(rng, m, "output", 0.8),
            conv=-1, turn=0, sysfp=sysfp[a], pfp=pfp, net=home[a], ua=ua[a],
            key=rng.integers(0, keys[a]), rate_limited_share=rl[a], error_share=err,
            max_tokens_share=spec.max_tokens_share,
        ))
    return batches
