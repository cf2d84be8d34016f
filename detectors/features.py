"""Window features: the numbers detectors see for one account in one closed window.

Computed once per closed account-window from the counters of
:class:`~detectors.windows.AccountWindow`; nothing here runs per event.
"""

from __future__ import annotations

import math

from detectors.windows import AccountWindow

__all__ = ["FEATURE_NAMES", "account_age_days", "window_features"]

#: Every feature :func:`window_features` returns, in a fixed order (for evidence and docs).
FEATURE_NAMES = (
    "requests",
    "input_tokens",
    "output_tokens",
    "output_input_ratio",
    "output_per_request",
    "max_tokens_share",
    "distinct_prompts",
    "near_duplicate_rate",
    "single_turn_share",
    "interarrival_cv",
    "error_share",
    "rate_limited_share",
    "distinct_ips",
    "distinct_asns",
    "distinct_user_agents",
    "active_seconds",
    "account_age_days",
)


def _num(n: int) -> float:
    """``n`` as a float, saturating at infinity instead of raising OverflowError.

    Validation bounds tokens per request, so window sums are far below 2**1023; this keeps
    window close from raising even if a bound is lifted or a counter is restored from old
    state (two 1e308-token events once crashed the worker here).
    """
    try:
        return float(n)
    except OverflowError:
        return math.inf if n > 0 else -math.inf


def _ratio(a: int, b: float) -> float:
    """``a / b`` without OverflowError (huge int over int) or ZeroDivisionError."""
    fa, fb = _num(a), float(b)
    if fb == 0.0:
        return math.nan
    return fa / fb if fa - fa == 0.0 or fb - fb == 0.0 else math.nan


def account_age_days(acc: AccountWindow) -> float:
    """Days between the account's creation and the window's last event; NaN if unknown."""
    ev = acc.last_event
    if ev is None or ev.account_created_ts is None:
        return math.nan
    return max(0.0, (acc.last_ts - ev.account_created_ts) / 86400.0)


def window_features(acc: AccountWindow) -> dict[str, float]:
    """Plain-dict features of one account-window.

    ``interarrival_cv`` is the coefficient of variation of the gaps between the window's
    events (0 = metronome, about 1 = Poisson); NaN with fewer than two gaps.

    Examples
    --------
    >>> from detectors.events import Event
    >>> acc = AccountWindow()
    >>> for t in (0.0, 10.0, 20.0, 30.0):
    ...     acc.add(Event("a", t, "m", 100, 300, stop_reason="max_tokens", turn=1))
    >>> f = window_features(acc)
    >>> f["output_input_ratio"], f["max_tokens_share"], f["single_turn_share"]
    (3.0, 1.0, 1.0)
    >>> f["interarrival_cv"]
    0.0
    """
    n = acc.requests
    nf = float(max(n, 1))
    if acc.gap_n >= 2:
        mean = acc.gap_sum / acc.gap_n
        var = max(0.0, acc.gap_sumsq / acc.gap_n - mean * mean)
        cv = math.sqrt(var) / mean if mean > 0 else 0.0
    else:
        cv = math.nan
    fps = acc.distinct_fps
    return {
        "requests": float(n),
        "input_tokens": _num(acc.input_tokens),
        "output_tokens": _num(acc.output_tokens),
        "output_input_ratio": _ratio(acc.output_tokens, _num(max(acc.input_tokens, 1))),
        "output_per_request": _ratio(acc.output_tokens, nf),
        "max_tokens_share": acc.max_tokens_stops / nf,
        "distinct_prompts": float(fps),
        "near_duplicate_rate": acc.near_dups / max(n - 1, 1) if fps else 0.0,
        "single_turn_share": 1.0 - acc.multi_turn / nf,
        "interarrival_cv": cv,
        "error_share": acc.errors / nf,
        "rate_limited_share": acc.rate_limited / nf,
        "distinct_ips": float(acc.n_ips),
        "distinct_asns": float(acc.n_asns),
        "distinct_user_agents": float(acc.n_uas),
        "active_seconds": max(0.0, acc.last_ts - acc.first_ts),
        "account_age_days": account_age_days(acc),
    }
