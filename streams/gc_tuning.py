"""Garbage-collector settings for the long-running, allocation-heavy commands.

Every event allocates (its decoded fields, a window's counters), and a worker keeps hundreds
of thousands of long-lived objects (per-account baselines). With CPython's default
generation-0 threshold of 700 allocations the collector runs thousands of times per second
and each pass walks young objects that are nearly all still alive. Measured back to back with
``bench.throughput`` (400k events, 40k accounts): the worker went from 13.6k to 22.7k events/s
(69 to 39 µs of CPU per event) and replay from 29k to 36k events/s, for 29 % more peak RSS.
Cycles are still collected, less often.
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
