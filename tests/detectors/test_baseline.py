from __future__ import annotations

import pickle
import sys

from detectors.baseline import AccountBaseline
from detectors.population import PopulationModel


def test_state_per_account_is_well_under_a_kilobyte():
    b = AccountBaseline()
    for w in range(50):
        b.learn_one({"requests": 3.0 + w % 4, "output_tokens": 900.0})
        b.observe(w * 60.0, w * 60.0 + 30, 3, 900, 1.0, 0.2, 0.0, 1)
    # Measured two ways: live object sizes and the serialised form a state store keeps.
    assert b.nbytes() == sys.getsizeof(b) + sys.getsizeof(b._s)
    assert b.nbytes() < 700
    assert len(pickle.dumps(b)) < 500


def test_cohort_prior_scores_a_brand_new_account_at_once():
    pop = PopulationModel(half_life=1e6)
    for i in range(500):
        pop.learn("log_requests", 0.7 + 0.1 * (i % 5))
        pop.learn("log_output_tokens", 6.0 + 0.1 * (i % 5))
    prior = {"requests": pop.prior("log_requests"), "output_tokens": pop.prior("log_output_tokens")}
    with_prior = AccountBaseline(grace_period=5, prior=prior)
    without = AccountBaseline(grace_period=5)
    burst = {"requests": 400.0, "output_tokens": 500_000.0}
    assert without.score_one(burst) == 0.0
    assert with_prior.score_one(burst) > 6.0
    assert with_prior.score_one({"requests": 1.0, "output_tokens": 450.0}) < 1.0


def test_pickle_round_trip_keeps_scores():
    b = AccountBaseline(grace_period=3)
    for v in (5, 6, 5, 7, 6, 5):
        b.learn_one({"requests": float(v), "output_tokens": 100.0 * v})
    c = pickle.loads(pickle.dumps(b))
    x = {"requests": 60.0, "output_tokens": 9000.0}
    assert c.signal_scores(x) == b.signal_scores(x)


def test_profile_separates_harvesters_from_chat_users():
    now = 40 * 86400.0
    harvester, chatter = AccountBaseline(), AccountBaseline()
    for w in range(20):
        t = now - 3600.0 * (20 - w)
        harvester.observe(t, t, 1, 2400, 1.0, 0.4, now - 3 * 86400.0, 1)
        chatter.observe(t, t + 40, 4, 900, 0.25, 0.0, now - 400 * 86400.0, 0)
    assert harvester.extraction_likeness(now) > 0.8
    assert chatter.extraction_likeness(now) == 0.0
    # Scripted hourly requests: a tiny spread of log gaps.
    assert harvester.timing_spread < 0.05


def test_streak_counts_consecutive_anomalies():
    b = AccountBaseline()
    assert [b.streak(x) for x in (True, True, False, True)] == [1, 2, 0, 1]
