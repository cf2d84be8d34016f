"""Garbage-collector settings for the long-running, allocation-heavy commands.

Every event allocates (its decoded fields, a window's counters), and a worker keeps hundreds
of thousands of long-lived objects (per-account baselines). With CPython's default
generation-0 threshold of 700 allocations the collector runs thousands of times per second
and each pass walks young objects that are nearly all still alive: measured with
``bench.stage`` (300k events, 30k accounts), the per-event path ran 22k events/s with the
defaults and 32k-35k with the settings below. Cycles are still collected, less often.
"""

from __future__ import annotations

import gc

__all__ = ["GEN0_THRESHOLD", "tune_gc"]

GEN0_THRESHOLD = 100_000


def tune_gc() -> None:
    """Raise the young-generation threshold and move everything allocated so far (imports,
    the app's set-up) into a permanent generation the collector no longer scans."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, max(gen1, 50), gen2)
