"""tune_gc: a large young generation, start-up objects out of the collector's way."""

from __future__ import annotations

import gc

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
