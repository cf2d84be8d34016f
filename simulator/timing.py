"""When requests happen: the generation context (clock, RNG, tables) and vectorised arrival
processes — human sessions, backend apps, scripted round-robin schedules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from simulator.calibrate import load_calibration
from simulator.scenario import Scenario
from simulator.tables import Tables

__all__ = [
    "Context",
    "app_arrivals",
    "poisson_cells",
    "scripted_arrivals",
    "session_arrivals",
]

# Hour multipliers for a block of accounts: (account positions, absolute hours) -> factor.
RateHook = Callable[[np.ndarray, np.ndarray], np.ndarray]

_CELLS_PER_BLOCK = 2_000_000


@dataclass
class Context:
    """Everything a population generator needs; one per ``generate`` call."""

    scenario: Scenario
    rng: np.random.Generator
    tables: Tables = field(default_factory=Tables)
    next_conv: int = 0

    def __post_init__(self) -> None:
        meta = self.scenario.scenario
        self.t0 = meta.start.timestamp()
        self.hours = meta.duration_h
        self.t_end = self.t0 + self.hours * 3600.0
        cal = load_calibration()["servegen"]
        self.daily = np.asarray(cal["hourly_profile"], dtype=float)
        self.weekly = np.asarray(cal["weekday_profile"], dtype=float)
        self._start_utc_h = meta.start.hour + meta.start.minute / 60.0 + meta.start.second / 3600
        self._start_weekday = meta.start.weekday()
        self.model_names = [m.name for m in meta.models]

    def ts(self, hours: np.ndarray | float) -> np.ndarray:
        return self.t0 + np.asarray(hours, dtype=float) * 3600.0

    def convs(self, n: int) -> np.ndarray:
        first = self.next_conv
        self.next_conv += n
        return np.arange(first, first + n)

    def diurnal(self, tz: np.ndarray, hours: np.ndarray) -> np.ndarray:
        """Calibrated daily x weekly activity factor for accounts in UTC offsets ``tz``
        (shape a) at scenario hours ``hours`` (shape h); result shape (a, h)."""
        local = self._start_utc_h + hours[None, :] + tz[:, None]
        hod = np.floor(local).astype(np.int64) % 24
        dow = (self._start_weekday + np.floor(local / 24.0).astype(np.int64)) % 7
        return self.daily[hod] * self.weekly[dow]

    def model_index(self, name: str | None) -> int:
        return 0 if name is None else self.model_names.index(name)


def _hour_grid(h0: float, h1: float) -> tuple[np.ndarray, np.ndarray]:
    """Whole hours covering [h0, h1) and the covered fraction of each."""
    hours = np.arange(np.floor(h0), np.ceil(h1))
    cover = np.clip(np.minimum(hours + 1, h1) - np.maximum(hours, h0), 0.0, 1.0)
    return hours, cover


def poisson_cells(
    ctx: Context,
    lam_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n: int,
    h0: float,
    h1: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts per (account, hour) in blocks; return (account position, hour start)
    for every arrival, arrivals placed uniformly inside the covered part of their hour."""
    hours, cover = _hour_grid(h0, h1)
    if n == 0 or len(hours) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    block = max(1, _CELLS_PER_BLOCK // len(hours))
    pos_out, t_out = [], []
    for a0 in range(0, n, block):
        pos = np.arange(a0, min(n, a0 + block))
        lam = lam_fn(pos, hours) * cover[None, :]
        counts = ctx.rng.poisson(lam)
        rows, cols = np.nonzero(counts)
        k = counts[rows, cols]
        p = np.repeat(pos[rows], k)
        h = np.repeat(hours[cols], k)
        lo = np.maximum(h, h0)
        hi = np.minimum(h + 1, h1)
        pos_out.append(p)
        t_out.append(lo + ctx.rng.random(len(h)) * (hi - lo))
    return np.concatenate(pos_out), np.concatenate(t_out)


def session_arrivals(
    ctx: Context,
    tz: np.ndarray,
    sessions_per_day: np.ndarray,
    *,
    turns_mean: float,
    think_time_s: float,
    h0: float = 0.0,
    h1: float | None = None,
    hook: RateHook | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Human use: conversations start as an inhomogeneous Poisson process following the
    calibrated local day; each has a geometric number of turns separated by log-normal think
    times. Returns (account position, ts, conversation number, turn), unsorted."""
    h1 = ctx.hours if h1 is None else h1

    def lam(pos: np.ndarray, hours: np.ndarray) -> np.ndarray:
        f = ctx.diurnal(tz[pos], hours) * (sessions_per_day[pos, None] / 24.0)
        return f * hook(pos, hours) if hook is not None else f

    pos, start_h = poisson_cells(ctx, lam, len(tz), h0, h1)
    rng = ctx.rng
    turns = rng.geometric(1.0 / turns_mean, size=len(pos))
    conv = ctx.convs(len(pos))
    total = int(turns.sum())
    sess = np.repeat(np.arange(len(pos)), turns)
    first = np.cumsum(turns) - turns
    turn = np.arange(total) - np.repeat(first, turns) + 1
    gaps = rng.lognormal(np.log(think_time_s), 0.8, size=total)
    gaps[turn == 1] = 0.0
    c = np.cumsum(gaps)
    offset = c - np.repeat(c[first], turns) if total else c
    ts = ctx.ts(start_h[sess]) + offset
    keep = ts < ctx.ts(h1)
    return pos[sess][keep], ts[keep], conv[sess][keep], turn[keep]


def app_arrivals(
    ctx: Context,
    tz: np.ndarray,
    per_hour: np.ndarray,
    cv: np.ndarray,
    *,
    h0: float = 0.0,
    h1: float | None = None,
    hook: RateHook | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Backend apps: hourly rates follow the calibrated day, modulated by a gamma factor
    with the account's inter-arrival CV (ServeGen fits) so bursty clients are bursty, and
    Poisson inside the hour. Returns (account position, ts)."""
    h1 = ctx.hours if h1 is None else h1
    k = 1.0 / np.maximum(cv, 0.05) ** 2

    def lam(pos: np.ndarray, hours: np.ndarray) -> np.ndarray:
        g = ctx.rng.gamma(k[pos, None], 1.0 / k[pos, None], size=(len(pos), len(hours)))
        f = ctx.diurnal(tz[pos], hours) * per_hour[pos, None] * g
        return f * hook(pos, hours) if hook is not None else f

    pos, t = poisson_cells(ctx, lam, len(tz), h0, h1)
    return pos, ctx.ts(t)


def scripted_arrivals(
    ctx: Context,
    n_slots: int,
    rate_per_slot_h: float,
    h0: float,
    h1: float,
    timing_cv: float,
    slot_start_h: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A scheduler walking round-robin over ``n_slots`` accounts: request j goes to slot
    ``j % n_slots`` at ``h0 + j * period / n_slots``, with normal jitter of ``timing_cv``
    times the per-slot period. Slots before their ``slot_start_h`` are skipped.
    Returns (slot, ts)."""
    period_s = 3600.0 / rate_per_slot_h
    step = period_s / n_slots
    n = int((h1 - h0) * 3600.0 / step)
    j = np.arange(n, dtype=np.int64)
    slot = j % n_slots
    t = ctx.ts(h0) + j * step + ctx.rng.normal(0.0, timing_cv * period_s, size=n)
    keep = (t >= ctx.ts(h0)) & (t < ctx.ts(h1))
    if slot_start_h is not None:
        keep &= t >= ctx.ts(slot_start_h[slot])
    return slot[keep], t[keep]
