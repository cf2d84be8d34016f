"""RateDetector: the River contract plus the behaviours a rate series needs."""

from __future__ import annotations

import copy
import math
import pickle
import random

import pytest

from detectors.rate import RateDetector


def _feed(det: RateDetector, xs: list[float]) -> list[float]:
    out = []
    for v in xs:
        out.append(det.score_one({"value": v}))
        det.learn_one({"value": v})
    return out


def _seasonal(n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [
        (1.0 if (t // 288) % 7 < 5 else 0.7) * (200 + 80 * math.sin(2 * math.pi * t / 288))
        + rng.gauss(0, 8)
        for t in range(n)
    ]


def test_score_before_learning_and_during_warm_up_is_zero():
    det = RateDetector(grace_period=10)
    assert det.score_one({"value": 1e9}) == 0.0
    scores = _feed(det, [5, 6, 5, 7, 5, 6, 5, 6, 5, 1000])
    assert scores == [0.0] * 10


@pytest.mark.parametrize("level", [0.0, 3.0, 1e6, -42.5])
def test_constant_series_never_scores(level: float):
    scores = _feed(RateDetector(), [level] * 500)
    assert max(scores) == 0.0


def test_scores_are_bounded_below_one_even_after_a_flat_line():
    det = RateDetector()
    _feed(det, [7.0] * 200)
    s = det.score_one({"value": 1e12})
    assert 0.99 < s < 1.0


def test_spikes_rank_above_every_ordinary_point_on_a_seasonal_series():
    xs = _seasonal(4000)
    spikes = [1500, 2300, 3100]
    for t in spikes:
        xs[t] += 150
    scores = _feed(RateDetector(), xs)
    ordinary = [s for t, s in enumerate(scores) if t > 300 and all(abs(t - k) > 3 for k in spikes)]
    assert min(scores[t] for t in spikes) > 0.5
    # Noise is calibrated near 0: the median ordinary score is tiny, the 99th percentile low.
    ordinary.sort()
    assert ordinary[len(ordinary) // 2] < 0.02
    assert ordinary[int(0.99 * len(ordinary))] < 0.3


def test_level_shift_fires_at_onset_then_goes_quiet():
    rng = random.Random(2)
    xs = [100 + rng.gauss(0, 3) for _ in range(600)] + [160 + rng.gauss(0, 3) for _ in range(600)]
    scores = _feed(RateDetector(), xs)
    assert scores[600] > 0.9
    assert max(scores[630:]) < 0.5


def test_slow_drift_is_followed():
    rng = random.Random(4)
    xs = [50 + 0.05 * t + rng.gauss(0, 2) for t in range(3000)]
    scores = _feed(RateDetector(), xs)
    assert max(scores[200:]) < 0.6


def test_one_sided_ignores_drops():
    rng = random.Random(6)
    xs = [100 + rng.gauss(0, 3) for _ in range(300)]
    det2, det1 = RateDetector(), RateDetector(two_sided=False)
    _feed(det2, xs)
    _feed(det1, xs)
    assert det2.score_one({"value": 20}) > 0.9
    assert det1.score_one({"value": 20}) == 0.0
    assert det1.score_one({"value": 180}) > 0.9


def test_river_contract_clone_pickle_and_no_input_mutation():
    det = RateDetector(alpha=0.2, grace_period=5)
    xs = _seasonal(300)
    _feed(det, xs)
    fresh = det.clone()
    assert fresh._get_params() == det._get_params() and fresh.n_seen == 0
    restored = pickle.loads(pickle.dumps(det))
    x = {"value": 321.0}
    before = copy.deepcopy(x)
    assert restored.score_one(x) == det.score_one(x)
    assert x == before
    # Scoring does not learn.
    assert det.score_one(x) == det.score_one(x)
    assert "RateDetector(alpha=0.2" in repr(det)


def test_non_finite_values_are_ignored():
    det = RateDetector(grace_period=2)
    _feed(det, [1.0, 2.0, 1.0])
    det.learn_one({"value": float("nan")})
    assert det.n_seen == 3
    assert det.score_one({"value": float("inf")}) == 0.0


def test_bad_parameters_name_the_field():
    with pytest.raises(ValueError, match="alpha"):
        RateDetector(alpha=0)
    with pytest.raises(ValueError, match="transform"):
        RateDetector(transform="log")
