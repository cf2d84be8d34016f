"""tune_gc: a large young generation, start-up objects out of the collector's way."""

from __future__ import annotations

import gc
import weakref

from streams.gc_tuning import GEN0_THRESHOLD, tune_gc


def test_tune_gc_raises_threshold_and_freezes_startup_objects() -> None:
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        # CPython's defaults: an in-process replay test may have tuned the collector already.
        gc.set_threshold(700, 10, 10)
        tune_gc()
        gen0, gen1, gen2 = gc.get_threshold()
        assert gen0 == GEN0_THRESHOLD > 700
        assert gen1 >= 10 and gen2 == 10
        assert gc.get_freeze_count() > 0
        # Cycles made afterwards are still collected.
        a: list[object] = []
        a.append(a)
        del a
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class _Node:
    __slots__ = ("__weakref__", "peer")


def test_cycles_are_collected_without_an_explicit_collect() -> None:
    """A flood of cyclic garbage (a rejected record's exception holds its traceback, which
    holds the frame) must not wait for a collection nobody calls: the raised threshold still
    triggers one automatically."""
    before = gc.get_threshold()
    was_enabled = gc.isenabled()
    try:
        gc.enable()
        tune_gc()
        freed = 0

        def gone(_: object) -> None:
            nonlocal freed
            freed += 1

        refs = []
        first_passes = gc.get_stats()[0]["collections"]
        for i in range(GEN0_THRESHOLD + 100_000):
            a, b = _Node(), _Node()
            a.peer, b.peer = b, a  # a cycle: reference counting alone never frees it
            if i % 1000 == 0:
                refs.append(weakref.ref(a, gone))
        del a, b
        assert gc.get_stats()[0]["collections"] > first_passes
        assert freed > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
        if not was_enabled:
            gc.disable()
