from __future__ import annotations

import math
import random

from detectors.population import PopulationModel


def test_quantiles_follow_the_data_and_forget_slowly():
    rng = random.Random(1)
    pop = PopulationModel(half_life=2000, min_weight=50)
    assert math.isnan(pop.quantile("x", 0.5))
    for _ in range(5000):
        pop.learn("x", rng.gauss(3.0, 0.5))
    assert abs(pop.quantile("x", 0.5) - 3.0) < 0.15
    assert pop.robust_z("x", 3.0) < 0.5 and pop.robust_z("x", 8.0) > 6
    # A launch: the population moves; after a few half-lives its median follows.
    for _ in range(10000):
        pop.learn("x", rng.gauss(5.0, 0.5))
    assert abs(pop.quantile("x", 0.5) - 5.0) < 0.3


def test_prior_is_none_until_enough_weight():
    pop = PopulationModel(min_weight=10)
    for _ in range(5):
        pop.learn("x", 1.0)
    assert pop.prior("x") is None
    for _ in range(10):
        pop.learn("x", 1.0)
    med, std = pop.prior("x")
    assert 0.9 < med < 1.2 and std > 0
