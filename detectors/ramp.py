"""Per-account run state of :mod:`detectors.ramp_rule` (``account_ramp``): seven floats
in the account's baseline array, updated once per closed account-window.

A *run* is the clock hours since the account's first harvest-like answer, broken by
``max_gap_h`` hours without one. The state holds the current clock hour and its
harvest-like count, the run's complete hours, its hours with harvest, its last such hour,
and two sums for a Poisson trend test over the run (``sum n_k``, ``sum k n_k``).

Examples
--------
>>> s = array("d", bytes(8 * STATE_SIZE))
>>> for hour in range(7):                      # 3 harvest-like answers every hour
...     ramp_observe(s, 0, hour * 3600.0 + 60.0, 3)
>>> hours, active, total, z = ramp_stats(s, 0)
>>> hours, active, total, round(z, 3)      # hours 0-5 complete, hour 6 under way
(7.0, 7.0, 21.0, 0.0)
>>> ramp_observe(s, 0, 10 * 3600.0, 1)          # three silent hours end the run;
>>> ramp_stats(s, 0)[:3]                          # a new one starts with this hour
(1.0, 1.0, 1.0)
"""

from __future__ import annotations

import math
from array import array
from typing import Final

__all__ = ["STATE_SIZE", "ramp_observe", "ramp_stats", "ramp_valid"]

# Slots (relative to the offset): current clock hour, harvest-like answers in it, hours in
# the run (complete hours since its first harvest-like hour), hours of the run with a
# harvest-like answer, index of the last such hour, sum n_k, sum k * n_k.
_HOUR, _CUR, _K, _ACT, _LAST, _S0, _S1 = range(7)
STATE_SIZE: Final = 7
_H: Final = 3600.0
# A run restarts after this many hours (two weeks): the test is about a ramp's first days
# (the rule only judges accounts younger than 30 days), and the sums stay small numbers.
_MAX_RUN_H: Final = 336.0
# Largest harvest-like count one hour may hold in a restored state (a bound, not a rule).
_MAX_COUNT: Final = 1e9


def ramp_observe(s: array[float], off: int, ts: float, harvest_like: int,
                 max_gap_h: int = 3) -> None:
    """Fold one account-window (its first event at ``ts``, ``harvest_like`` answers) into
    the run state ``s[off:off + STATE_SIZE]`` (in place). Windows arrive in time order."""
    h = math.floor(ts / _H)
    cur_h = s[off + _HOUR]
    if h <= cur_h:
        if harvest_like:
            s[off + _CUR] += harvest_like
        return
    k = s[off + _K]
    cur = s[off + _CUR]
    if cur > 0.0:
        s[off + _S0] += cur
        s[off + _S1] += k * cur
        s[off + _ACT] += 1.0
        s[off + _LAST] = k
        k += 1.0
    elif k > 0.0:
        k += 1.0
    if k > 0.0:
        # Hours with no window at all are hours without harvest.
        k += max(0.0, h - cur_h - 1.0)
        if k - 1.0 - s[off + _LAST] >= max_gap_h or k >= _MAX_RUN_H:
            k = 0.0
            s[off + _ACT] = s[off + _S0] = s[off + _S1] = s[off + _LAST] = 0.0
    s[off + _K] = k
    s[off + _HOUR] = h
    s[off + _CUR] = float(harvest_like)


def ramp_stats(s: array[float], off: int) -> tuple[float, float, float, float]:
    """(hours in the run, hours with harvest, harvest-like answers, trend z). The current
    clock hour counts once it holds a harvest-like answer (it is then an hour with harvest
    whatever comes later); the trend z is over the run's complete hours only (a partial
    hour's count is low): the Poisson score test of a log-linear rate against a constant
    one, ``(sum k n_k - mean(k) sum n_k) / sqrt(mean(n) * sum (k - mean k)^2)``, 0 below
    three complete hours."""
    k, act, s0, s1 = s[off + _K], s[off + _ACT], s[off + _S0], s[off + _S1]
    cur = s[off + _CUR]
    z = 0.0
    if k >= 3.0 and s0 > 0.0:
        z = (s1 - 0.5 * (k - 1.0) * s0) / math.sqrt(s0 * (k * k - 1.0) / 12.0)
    if cur > 0.0:
        return k + 1.0, act + 1.0, s0 + cur, z
    return k, act, s0, z


def ramp_valid(s: array[float], off: int) -> bool:
    """Whether restored run state is numbers this module could have written."""
    hour, cur, k, act, last, s0, s1 = (s[off + i] for i in range(STATE_SIZE))
    return (
        all(math.isfinite(x) for x in (hour, cur, k, act, last, s0, s1))
        and 0.0 <= cur <= _MAX_COUNT
        and 0.0 <= k <= _MAX_RUN_H
        and 0.0 <= act <= k
        and 0.0 <= last <= max(k - 1.0, 0.0)
        and 0.0 <= s0 <= _MAX_COUNT * _MAX_RUN_H
        and 0.0 <= s1 <= s0 * max(k - 1.0, 0.0)
    )
