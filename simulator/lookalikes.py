"""Benign look-alikes of swarms and lockstep groups (labelled benign, ``population`` names
the trap): a class signing up together, an enterprise onboarding through SSO, a cron fleet
of service accounts, and a popular app whose users all send its template."""

from __future__ import annotations

import numpy as np

from simulator.benign import assemble, random_ages
from simulator.content import (
    cloud_nets,
    flip_bits,
    random_u64,
    residential_nets,
    token_draw,
)
from simulator.scenario import AppTemplate, ClassCohort, CronFleet, SsoOnboarding
from simulator.tables import COUNTRIES, COUNTRY_BY_TZ, Batch, hex_ids
from simulator.timing import Context, session_arrivals

__all__ = ["app_template", "class_cohort", "cron_fleet", "sso_onboarding"]

_BROWSER_UAS = ("Mozilla/5.0 (Macintosh) Chat/2.4", "Mozilla/5.0 (Windows NT 10.0) Chat/2.4")


def _first_tries(
    ctx: Context, created: np.ndarray, most: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Right after signing up, each new user tries the API: 1..``most`` turns of one
    conversation within minutes. Returns (position, ts, conversation, turn)."""
    rng = ctx.rng
    n = len(created)
    k = rng.integers(1, most + 1, size=n)
    pos = np.repeat(np.arange(n), k)
    first = np.cumsum(k) - k
    gaps = rng.lognormal(np.log(40.0), 0.7, size=len(pos))
    gaps[first] = rng.uniform(30.0, 600.0, size=n)
    cum = np.cumsum(gaps)
    ts = created[pos] + cum - np.repeat(cum[first], k) + np.repeat(gaps[first], k)
    turn = np.arange(len(pos)) - np.repeat(first, k) + 1
    conv = ctx.convs(n)[pos]
    return pos, ts, conv, turn


def _human_batch(
    ctx: Context, rows: np.ndarray, pos: np.ndarray, ts: np.ndarray, conv: np.ndarray,
    turn: np.ndarray, *, pfp: np.ndarray, net: np.ndarray, ua: np.ndarray,
    sysfp: np.ndarray | int = -1,
) -> Batch:
    rng = ctx.rng
    m = len(ts)
    return assemble(
        ctx, rows[pos], ts, model=np.full(m, ctx.model_index(None)),
        inp=token_draw(rng, m, "input") + (turn - 1) * rng.integers(50, 400, size=m),
        out=token_draw(rng, m, "output"), conv=conv, turn=turn, sysfp=sysfp, pfp=pfp,
        net=net, ua=ua, rate_limited_share=0.01, max_tokens_share=0.02,
    )


def _cohort_traffic(
    ctx: Context, rows: np.ndarray, created: np.ndarray, tz: float, spd: float,
    turns_mean: float, h0: float, h1: float, first_most: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First tries at signup, then ordinary sessions in the cohort's local day."""
    rng, n = ctx.rng, len(rows)
    p1, t1, c1, u1 = _first_tries(ctx, created, first_most)
    per = spd * np.exp(rng.normal(0.0, 0.7, size=n))
    p2, t2, c2, u2 = session_arrivals(
        ctx, np.full(n, tz), per, turns_mean=turns_mean, think_time_s=60.0, h0=h0, h1=h1
    )
    keep = t2 >= created[p2]
    pos = np.concatenate([p1, p2[keep]])
    ts = np.concatenate([t1, t2[keep]])
    conv = np.concatenate([c1, c2[keep]])
    turn = np.concatenate([u1, u2[keep]])
    inside = ts < ctx.ts(h1)
    return pos[inside], ts[inside], conv[inside], turn[inside]


def class_cohort(ctx: Context, t: ClassCohort) -> list[Batch]:
    """A class or hackathon: every student signs up in the same hour under the school's
    org and tries the API together, then does homework for days (assignment templates,
    multi-turn help), half from the campus network."""
    rng, n = ctx.rng, t.accounts
    org = hex_ids(rng, 1)[0]
    created = ctx.ts(t.start_h) + rng.uniform(0.0, t.signup_h * 3600.0, size=n)
    rows = ctx.tables.add_accounts(
        n, created=created, tier="free", population=f"trap:{t.name}", org=np.full(n, org),
    )
    h1 = ctx.scenario.end_h(t.start_h, t.duration_h)
    pos, ts, conv, turn = _cohort_traffic(
        ctx, rows, created, t.tz, t.sessions_per_day, t.turns_mean, t.start_h, h1,
        t.first_requests_max,
    )
    m = len(ts)
    campus = cloud_nets(rng, ctx.tables, 1, 30, country=COUNTRY_BY_TZ.get(t.tz, "US"))
    home = residential_nets(rng, ctx.tables, n, [COUNTRY_BY_TZ.get(t.tz, "US")] * n)
    on_campus = rng.random(m) < t.campus_share
    net = np.where(on_campus, campus[rng.integers(0, len(campus), size=m)], home[pos])
    work = random_u64(rng, t.assignments)
    pfp = np.where(
        rng.random(m) < t.assignment_share,
        flip_bits(rng, work[rng.integers(0, t.assignments, size=m)], 10, 3),
        random_u64(rng, m),
    )
    uas = np.array([ctx.tables.ua(u) for u in _BROWSER_UAS])
    ua = uas[rng.integers(0, len(uas), size=n)][pos]
    return [_human_batch(ctx, rows, pos, ts, conv, turn, pfp=pfp, net=net, ua=ua)]


def sso_onboarding(ctx: Context, t: SsoOnboarding) -> list[Batch]:
    """An enterprise turns on SSO: hundreds of accounts of one org and one invoice are
    created in a morning, then used at work through the company's egress addresses."""
    rng, n = ctx.rng, t.accounts
    org, pay = hex_ids(rng, 2)
    created = ctx.ts(t.start_h) + rng.uniform(0.0, t.signup_h * 3600.0, size=n)
    rows = ctx.tables.add_accounts(
        n, created=created, tier="enterprise", population=f"trap:{t.name}",
        org=np.full(n, org), payment=np.full(n, pay),
    )
    h1 = ctx.scenario.end_h(t.start_h, t.duration_h)
    pos, ts, conv, turn = _cohort_traffic(
        ctx, rows, created, t.tz, t.sessions_per_day, t.turns_mean, t.start_h, h1, 3
    )
    m = len(ts)
    egress = cloud_nets(rng, ctx.tables, 1, 8, country=COUNTRY_BY_TZ.get(t.tz, "US"))
    tool = int(ctx.tables.add_sysfps(random_u64(rng, 1))[0])
    uses_tool = (rng.random(n) < t.internal_tool_share)[pos]
    uas = np.array([ctx.tables.ua(u) for u in (*_BROWSER_UAS, "corp-assistant/1.4")])
    ua = np.where(uses_tool, uas[2], uas[rng.integers(0, 2, size=n)][pos])
    return [_human_batch(
        ctx, rows, pos, ts, conv, turn, pfp=random_u64(rng, m),
        net=egress[rng.integers(0, len(egress), size=m)], ua=ua,
        sysfp=np.where(uses_tool, tool, -1),
    )]


def cron_fleet(ctx: Context, t: CronFleet) -> list[Batch]:
    """Service accounts of one customer (one org, one card, old) that a cron job fires on
    the same minute of every hour: each sends ``requests_per_fire`` templated single-turn
    requests within ``fire_s`` seconds, all accounts in step."""
    rng, n = ctx.rng, t.accounts
    org, pay = hex_ids(rng, 2)
    rows = ctx.tables.add_accounts(
        n, created=random_ages(ctx, n, 60.0, 900.0), tier="enterprise",
        population=f"trap:{t.name}", org=np.full(n, org), payment=np.full(n, pay),
    )
    h0, h1 = t.start_h, ctx.scenario.end_h(t.start_h, t.duration_h)
    meta = ctx.scenario.scenario.start
    # Fire times: minute_of_hour past each every_h-th hour, in UTC.
    first = np.ceil(h0 + meta.minute / 60.0) - meta.minute / 60.0 + t.minute_of_hour / 60.0
    fires = np.arange(first - 1.0, h1, t.every_h)
    fires = fires[fires >= h0]
    per = t.requests_per_fire
    fire = np.repeat(fires, n * per)
    pos = np.tile(np.repeat(np.arange(n), per), len(fires))
    ts = ctx.ts(fire) + rng.uniform(0.0, t.fire_s, size=len(fire))
    keep = ts < ctx.ts(h1)
    pos, ts = pos[keep], ts[keep]
    m = len(ts)
    templates = random_u64(rng, t.templates)
    nets = cloud_nets(rng, ctx.tables, 1, 4)
    return [assemble(
        ctx, rows[pos], ts, model=np.full(m, ctx.model_index(None)),
        inp=token_draw(rng, m, "input", 2.0), out=token_draw(rng, m, "output", 1.5),
        conv=-1, turn=0, sysfp=-1,
        pfp=flip_bits(rng, templates[rng.integers(0, t.templates, size=m)], 4),
        net=nets[pos % len(nets)], ua=ctx.tables.ua("ops-cron/1.0 python-requests/2.32"),
        rate_limited_share=0.002, max_tokens_share=0.05,
    )]


def app_template(ctx: Context, t: AppTemplate) -> list[Batch]:
    """A popular app (say, a summariser extension) where each user brings their own API
    account: every request is the app's template with the user's text filled in,
    single-turn, from home networks; ``new_share`` of the users sign up during the
    scenario and start using it right away."""
    rng, n = ctx.rng, t.accounts
    h0, h1 = t.start_h, ctx.scenario.end_h(t.start_h, t.duration_h)
    new = rng.random(n) < t.new_share
    created = np.where(
        new, ctx.ts(h0) + rng.uniform(0.0, (h1 - h0) * 3600.0, size=n),
        random_ages(ctx, n, 3.0, 900.0),
    )
    tiers = rng.choice(np.array(["free", "pro"]), size=n, p=[0.6, 0.4])
    rows = ctx.tables.add_accounts(
        n, created=created, tier=tiers.tolist(), population=f"trap:{t.name}",
        payment=np.where(tiers == "pro", hex_ids(rng, n), -1),
    )
    tz = rng.choice(np.array([-8.0, -5.0, 0.0, 1.0, 5.5, 8.0]), size=n)
    spd = t.sessions_per_day * np.exp(rng.normal(0.0, 0.8, size=n))
    pos, ts, _, _ = session_arrivals(
        ctx, tz, spd, turns_mean=t.requests_per_session, think_time_s=90.0, h0=h0, h1=h1
    )
    # New users try it as soon as they sign up.
    p1, t1, _, _ = _first_tries(ctx, np.where(new, created, np.inf), 3)
    fresh = np.isfinite(t1)
    pos = np.concatenate([pos, p1[fresh]])
    ts = np.concatenate([ts, t1[fresh]])
    keep = (ts >= created[pos]) & (ts < ctx.ts(h1))
    pos, ts = pos[keep], ts[keep]
    m = len(ts)
    templates = random_u64(rng, t.templates)
    home = residential_nets(rng, ctx.tables, n, rng.choice(COUNTRIES, size=n).tolist())
    ua = ctx.tables.ua(t.user_agent)
    return [assemble(
        ctx, rows[pos], ts, model=np.full(m, ctx.model_index(None)),
        inp=token_draw(rng, m, "input", 3.0), out=token_draw(rng, m, "output", 1.2),
        conv=ctx.convs(m), turn=1, sysfp=-1,
        pfp=flip_bits(rng, templates[rng.integers(0, t.templates, size=m)], 10, 4),
        net=home[pos], ua=ua, rate_limited_share=0.01, max_tokens_share=0.03,
    )]
