from __future__ import annotations

import math
import os
import pickle
import random
import re
import struct
import sys
from pathlib import Path

import pytest

from detectors.baseline import (
    FORMAT_VERSION,
    HEADER,
    STATE_SIZE,
    AccountBaseline,
    StateFormatError,
)
from detectors.pipeline import Detection
from detectors.population import PopulationModel


def test_state_per_account_is_well_under_a_kilobyte():
    b = AccountBaseline()
    for w in range(50):
        b.learn_one({"requests": 3.0 + w % 4, "output_tokens": 900.0})
        b.observe(w * 60.0, w * 60.0 + 30, 3, 900, 1.0, 0.2, 0.0, 1)
    # Measured two ways: live object sizes and the serialised form a state store keeps.
    assert b.nbytes() == sys.getsizeof(b)  # one object: the baseline is its array
    assert b.nbytes() < 700
    assert len(b.to_bytes()) < 500


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


def test_saved_form_round_trips_and_keeps_scores():
    b = AccountBaseline(grace_period=3)
    for v in (5, 6, 5, 7, 6, 5):
        b.learn_one({"requests": float(v), "output_tokens": 100.0 * v})
    c = AccountBaseline.from_bytes(b.to_bytes())
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


# -- saved form: numbers only, everything validated ------------------------------------------


def _trained() -> AccountBaseline:
    b = AccountBaseline(grace_period=4, threshold=5.5)
    for w in range(12):
        b.learn_one({"requests": 3.0 + w % 4, "output_tokens": 900.0 + w})
        b.observe(w * 60.0, w * 60.0 + 30, 3, 900, 1.0, 0.2, 0.0, w % 2)
    b.last_flag = 600.0
    return b


def test_round_trip_is_byte_for_byte_and_restores_every_field():
    b = _trained()
    blob = b.to_bytes()
    assert blob[0] == FORMAT_VERSION
    assert len(blob) == HEADER.size + 8 * STATE_SIZE
    c = AccountBaseline.from_bytes(blob)
    assert c.to_bytes() == blob
    assert (c.grace_period, c.threshold, c.windows, c.last_flag) == (4, 5.5, 12, 600.0)
    assert c._s.tobytes() == b._s.tobytes()  # NaN and -inf slots included
    # Little-endian float64 after the header, whatever the machine.
    first = struct.unpack_from("<d", blob, HEADER.size)[0]
    assert first == b._s[0]
    # From a bytearray or memoryview (what a client library may hand over) too.
    assert AccountBaseline.from_bytes(memoryview(bytearray(blob))).to_bytes() == blob


class _Boom:
    """What an attacker writes to the changelog: unpickling it would run a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_is_rejected_and_never_executed(tmp_path: Path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(_Boom(marker), protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(StateFormatError, match=r"version 0x80 \(pickle from an older"):
        AccountBaseline.from_bytes(blob)
    # Through the pipeline too, at every pickle protocol (protocol 0 starts with a letter).
    det = Detection()
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(StateFormatError):
            det.import_account("victim", pickle.dumps(_Boom(marker), protocol=proto))
    assert not marker.exists()
    assert det.export_account("victim") is None


def test_an_old_pickled_baseline_is_rejected_with_a_clear_message():
    # What version 0 wrote: pickle of (threshold, array bytes, grace) -- rebuilt by hand.
    b = _trained()
    old = pickle.dumps((b.threshold, b._s.tobytes(), b.grace_period), protocol=5)
    with pytest.raises(StateFormatError) as err:
        AccountBaseline.from_bytes(old)
    assert "this account will relearn" in str(err.value)


def test_a_version_1_baseline_keeps_its_history_with_an_empty_ramp_run():
    # What version 1 wrote: the same header and the state array without the 7 ramp floats.
    b = _trained()
    ramp = STATE_SIZE - 43
    v1 = HEADER.pack(1, b.grace_period, b.threshold, 43) + b._s[:43].tobytes()
    old = AccountBaseline.from_bytes(v1)
    assert old._s[:43].tobytes() == b._s[:43].tobytes()  # NaN marks unset slots
    assert list(old._s[43:]) == [0.0] * ramp
    assert old.ramp_stats()[0] == 0.0
    assert old.to_bytes()[0] == FORMAT_VERSION
    assert AccountBaseline.from_bytes(old.to_bytes()).to_bytes() == old.to_bytes()
    assert old.score_one({"requests": 10.0, "output_tokens": 5000.0}) == b.score_one(
        {"requests": 10.0, "output_tokens": 5000.0}
    )


def _with_header(**kw: float) -> bytes:
    h = {"version": FORMAT_VERSION, "grace": 5, "threshold": 6.0, "size": STATE_SIZE} | kw
    return HEADER.pack(int(h["version"]), int(h["grace"]), h["threshold"], int(h["size"]))


@pytest.mark.parametrize(
    ("blob", "msg"),
    [
        (b"", "empty"),
        (b"\x02", "truncated"),
        (_trained().to_bytes()[:-1], "bytes, expected"),  # one byte short
        (_trained().to_bytes() + b"\x00" * 8, "bytes, expected"),  # one float too many
        (_with_header(size=STATE_SIZE + 1) + bytes(8 * (STATE_SIZE + 1)), "floats"),
        (_with_header(size=2**32 - 1), "floats"),  # a huge claimed size allocates nothing
        (_with_header(version=3) + bytes(8 * STATE_SIZE), "version 0x03"),
        # Version 1 had no ramp run: its header must not smuggle in a version-2 array.
        (_with_header(version=1) + bytes(8 * STATE_SIZE), "expected 43 (version 1)"),
        (_with_header(grace=0) + bytes(8 * STATE_SIZE), "grace"),
        (_with_header(grace=2**32 - 1) + bytes(8 * STATE_SIZE), "grace"),
        (_with_header(threshold=math.nan) + bytes(8 * STATE_SIZE), "threshold"),
        (_with_header(threshold=math.inf) + bytes(8 * STATE_SIZE), "threshold"),
        (_with_header(threshold=-1.0) + bytes(8 * STATE_SIZE), "threshold"),
        # Fixed garbage: test ids must be the same in every process (pytest-xdist compares).
        (_with_header() + random.Random(40).randbytes(40), "bytes, expected"),
        (b"\x00" * 200, "version 0x00"),
        ('{"json": 1}', "not bytes"),
        (None, "not bytes"),
    ],
)
def test_truncated_garbage_and_oversized_blobs_are_rejected(blob: bytes, msg: str):
    with pytest.raises(StateFormatError, match=re.escape(msg)):
        AccountBaseline.from_bytes(blob)


_UNPICKLERS = r"^\s*(?:import|from)\s+(?:c?pickle|_pickle|marshal|shelve|dill|cloudpickle|joblib)\b"


def test_nothing_in_detectors_or_streams_unpickles():
    root = Path(__file__).resolve().parents[2]
    users = [
        str(p.relative_to(root))
        for d in ("detectors", "streams")
        for p in (root / d).rglob("*.py")
        if re.search(_UNPICKLERS, p.read_text(), re.MULTILINE)
    ]
    assert users == []
