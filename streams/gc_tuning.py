"""Garbage-collector settings for the long-running, allocation-heavy commands.

Every event allocates (its decoded fields, a window's counters), and a worker keeps hundreds
of thousands of long-lived objects (per-account baselines). With CPython's default
generation-0 threshold of 700 allocations the collector runs thousands of times per second
and each pass walks young objects that are nearly all still alive. Measured back to back with
``bench.throughput`` (400k events, 40k accounts): the worker went from 13.6k to 22.7k events/s
(69 to 39 µs of CPU per event) and replay from 29k to 36k events/s, for 29 % more peak RSS.
Cycles are still collected, less often.

Why 1,000,000 and not 100,000: CPython counts allocations *net of deallocations*, and an open
window keeps a few tracked objects per event (the event, its account's counters) until it
closes, so a window of ~25k account-windows crossed 100,000 about twice and each pass walked
~100k objects that were all about to be freed at the close (~0.1 s per pass). The detection
path makes no cyclic garbage (a 400k-event replay collected 0 objects in those passes), so a
threshold above a window's growth only skips wasted walks: replay CPU over the bench's 400k
events 15.1-17.6 s -> 13.0-13.5 s, peak RSS unchanged (205 MB). Cyclic garbage from
libraries or from rejected records (an exception's traceback holds its frame) is still
collected: it counts towards the threshold like any other allocation, so at most ~1M such
objects wait for a pass.
"""

from __future__ import annotations

import gc

__all__ = ["GEN0_THRESHOLD", "tune_gc"]

GEN0_THRESHOLD = 1_000_000


def tune_gc() -> None:
    """Raise the young-generation threshold and move everything allocated so far (imports,
    the app's set-up) into a permanent generation the collector no longer scans."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, max(gen1, 50), gen2)
