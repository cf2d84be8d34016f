"""bench.univariate's scoring: the numbers in docs/detectors.md are only as good as this."""

from __future__ import annotations

import numpy as np
import pytest

from bench.univariate import SIGMA_MAX, Series, build_corpus, normalised, rank_auc, score_series


def _series(
    n: int = 1000, windows: tuple[tuple[int, int], ...] = ((400, 419), (700, 711))
) -> Series:
    return Series("s", "test", np.arange(n, dtype=float), np.zeros(n), list(windows))


def test_perfect_silent_and_noisy_detectors():
    s = _series()
    n_win = len(s.windows)
    perfect = np.zeros(1000)
    perfect[[400, 700]] = 1.0
    assert normalised(score_series(s, perfect, 0.5, 0.11), n_win) == pytest.approx(100.0)
    silent = np.zeros(1000)
    assert normalised(score_series(s, silent, 0.5, 0.11), n_win) == 0.0
    # Each detection outside a window costs A_FP, each step above threshold counted.
    noisy = perfect.copy()
    noisy[[300, 301, 302]] = 1.0
    assert score_series(s, noisy, 0.5, 0.11) == pytest.approx(2 * SIGMA_MAX - 0.33)


def test_earlier_is_better_and_only_the_first_detection_counts():
    s = _series()
    early, late, burst = np.zeros(1000), np.zeros(1000), np.zeros(1000)
    early[400] = late[415] = 1.0
    burst[400:420] = 1.0  # a window full of detections earns like its first one, no more
    score = [score_series(s, x, 0.5, 0.11) for x in (early, late, burst)]
    assert score[0] > score[1] > -2.0
    assert score[2] == pytest.approx(score[0])


def test_probation_is_ignored_and_rank_auc_measures_ranking():
    s = _series()
    x = np.zeros(1000)
    x[10] = 5.0  # inside the first 15 %: not a false positive
    x[400] = 1.0
    assert score_series(s, x, 0.5, 0.11) == pytest.approx(SIGMA_MAX - 1.0)
    ranked = np.linspace(0, 0.1, 1000)
    ranked[[405, 705]] = 2.0
    assert rank_auc([s], [ranked]) == 1.0
    assert rank_auc([s], [np.ones(1000)]) == 0.5  # saturated scores rank nothing


def test_corpus_is_seeded_and_labelled():
    a = build_corpus(3, 21, 1, None)
    b = build_corpus(3, 21, 1, None)
    assert [s.name for s in a] == [s.name for s in b]
    assert all(np.array_equal(x.x, y.x) for x, y in zip(a, b, strict=True))
    for s in a:
        assert s.windows and all(0.2 * len(s.x) <= lo <= hi < len(s.x) for lo, hi in s.windows)
