"""The coordination detectors keep compact per-account state (packed run records, lazily
created containers): they must find exactly what the straightforward versions found, and
stay within a bound of bytes per account."""

from __future__ import annotations

import random
import sys
import tracemalloc

import pytest

from detectors.coactivity import _RUN, CoactivityDetector, _pack_ids, _pay_key, _unpack_ids
from detectors.cohort import CohortDetector
from tests.detectors.coactivity_reference import CoactivityDetector as ReferenceCoactivity
from tests.detectors.cohort_reference import CohortDetector as ReferenceCohort

T0 = 100 * 86400.0


def _coactivity_stream(seed: int) -> list[tuple[str, object]]:
    """Learn and end-window calls: background accounts, a lockstep group, orgs that are
    None or not ASCII, late account-windows, and a window gap of more than a day."""
    rng = random.Random(seed)
    calls: list[tuple[str, object]] = []
    minute = 0
    group = [f"g{i}" for i in range(rng.randint(25, 40))]
    sessions = {rng.randint(70, 120), rng.randint(150, 200), rng.randint(260, 300)}
    for step in range(330):
        if step == 230:
            minute += 1500 + rng.randint(0, 100)  # a quiet day: no window closes
        xs = []
        for a in rng.sample(range(600), rng.randint(3, 12)):
            sec = T0 + minute * 60.0 + rng.uniform(0, 59.9)
            org = rng.choice([None, f"org-{a % 50}", f"örg-{a}"])
            xs.append({"account_id": f"bg{a}", "ts": T0 + minute * 60.0, "org": org,
                       "payment": rng.choice([None, f"pm{a % 7}"]), "first_ts": sec,
                       "last_ts": sec + rng.uniform(0, 1)})
        if any(abs(minute % 400 - s) <= 2 for s in sessions):
            for i, a in enumerate(group):
                if rng.random() < 0.9:
                    sec = T0 + minute * 60.0 + 20.0 + rng.uniform(0, 3)
                    xs.append({"account_id": a, "ts": T0 + minute * 60.0,
                               "org": f"o{i}", "payment": f"card-{i % 3}",
                               "first_ts": sec, "last_ts": sec})
        if rng.random() < 0.05 and minute > 3:  # a late account-window
            sec = T0 + (minute - 2) * 60.0
            xs.append({"account_id": f"bg{rng.randint(0, 599)}", "ts": sec, "org": None,
                       "first_ts": sec, "last_ts": sec})
        rng.shuffle(xs)
        calls.extend(("learn", x) for x in xs)
        calls.append(("end", minute))
        if rng.random() < 0.1:
            minute += rng.choice((15, 30, 60))  # cron-like pauses
        minute += 1
    return calls


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_packed_lockstep_state_finds_what_the_reference_finds(seed: int) -> None:
    kw = {"warmup_minutes": 10, "min_members": 10, "min_token": 5}
    new, ref = CoactivityDetector(**kw), ReferenceCoactivity(**kw)
    n_found = 0
    for kind, arg in _coactivity_stream(seed):
        if kind == "learn":
            assert new.score_one(arg) == ref.score_one(arg)
            new.learn_one(arg)
            ref.learn_one(arg)
        else:
            start = T0 + arg * 60.0
            fn, fr = new.end_window(start, start + 60.0), ref.end_window(start, start + 60.0)
            assert fn == fr
            n_found += len(fn)
            assert new.tracked == ref.tracked
            assert sorted(new._run) == sorted(ref._run)
            assert {a: (int(p.real), int(p.imag)) for a, p in new._prev.items()} == ref._prev
    assert n_found > 0  # the stream did exercise group finding


def _cohort_stream(seed: int) -> list[tuple[str, object]]:
    """Young suspects and chatty newcomers of several swarms and loners, older young
    accounts (the two-band rule), established accounts on the same keys."""
    rng = random.Random(seed)
    calls: list[tuple[str, object]] = []
    for w in range(240):
        ts = T0 + w * 600.0
        for _ in range(rng.randint(2, 9)):
            a = rng.randint(0, 300)
            swarm = a % 6
            keys = [f"pay:card-{swarm}" if rng.random() < 0.5 else f"pay:c{a}",
                    f"ip24:10.{swarm}.{rng.randint(0, 2)}", f"asn:{a % 4}"]
            keys += [f"tplb:{i}:{swarm:06x}" if rng.random() < 0.6
                     else f"tplb:{i}:{rng.randint(0, 50):06x}" for i in range(3)]
            age = rng.choice([0.2, 1.0, 5.0, 20.0, 400.0]) if a < 250 else 400.0
            req = rng.randint(1, 6)
            calls.append(("learn", {"account_id": f"a{a}", "ts": ts, "age_days": age,
                                    "org": rng.choice([None, f"o{a}", f"o{a % 3}"]),
                                    "requests": req, "harvest_like": rng.randint(0, req),
                                    "keys": keys}))
        calls.append(("end", ts))
    return calls


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lazy_swarm_state_finds_what_the_reference_finds(seed: int) -> None:
    kw = {"young_days": 30.0, "min_members": 4, "horizon_s": 6 * 3600.0, "hold_s": 3600.0,
          "max_key_members": 12, "max_account_keys": 5}
    new, ref = CohortDetector(**kw), ReferenceCohort(**kw)
    n_found = 0
    for kind, arg in _cohort_stream(seed):
        if kind == "learn":
            assert new.score_one(arg) == ref.score_one(arg)
            new.learn_one(arg)
            ref.learn_one(arg)
        else:
            fn, fr = new.end_window(arg, arg + 600.0), ref.end_window(arg, arg + 600.0)
            assert fn == fr
            n_found += len(fn)
            assert new.tracked == ref.tracked
    assert n_found > 0


def test_swarm_state_of_young_accounts_that_are_no_suspects_is_small() -> None:
    ids = _ids(20_000)
    xs = [{"account_id": a, "ts": T0, "age_days": 3.0, "org": None, "requests": 6,
           "harvest_like": 0, "keys": [f"pay:{a}", f"ip24:{a}"]} for a in ids]

    def feed(det, ids):
        for x in xs:
            det.learn_one(x)

    per_new = _bytes_per_account(CohortDetector(young_days=30.0), feed, ids)
    per_ref = _bytes_per_account(ReferenceCohort(young_days=30.0), feed, ids)
    # Its record and dict entry; no empty key and band dicts.
    assert per_new < 150, per_new
    assert per_ref >= per_new + 120, (per_ref, per_new)


def test_run_record_round_trip() -> None:
    for org, pay in [(None, None), ("org-1", None), (None, "pm"), ("ö\udcff", "x" * 300),
                     ("", ""), ("\x00" * 9, "\udcff")]:
        rec = _RUN.pack(29_833_333, 29_833_335, 1.5e9, 1.5e9 + 0.001) + _pack_ids(org, pay)
        # The payment is kept as its 64-bit key: groups only count distinct payments.
        assert _unpack_ids(rec) == (org, None if pay is None else _pay_key(pay))
        assert _RUN.unpack_from(rec) == (29_833_333, 29_833_335, 1.5e9, 1.5e9 + 0.001)
    assert len({_pay_key(f"pm_{i}") for i in range(10_000)}) == 10_000
    # Minutes beyond int32 (a replay with unbounded event times) are not learnt, quietly.
    det = CoactivityDetector()
    for ts in (60.0 * 2**31, -60.0 * 2**31 - 60.0):
        det.learn_one({"account_id": "far", "ts": ts, "org": "o", "payment": "p"})
    det.learn_one({"account_id": "near", "ts": 60.0 * (2**31 - 1), "org": None})
    assert sorted(det._run) == ["near"] and det.end_window(0.0, 60.0) == []
    for bad in ((7, None), (None, b"pm")):
        with pytest.raises(TypeError, match="str or None"):
            _pack_ids(*bad)  # type: ignore[arg-type]


def _bytes_per_account(det, feed, ids: list[str]) -> float:
    """Bytes ``det`` holds after ``feed(det, ids)``, per id (tracemalloc: the ids and the
    inputs are the caller's)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    feed(det, ids)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / len(ids)


def _ids(n: int) -> list[str]:
    return [f"acct_{i:010d}" for i in range(n)]


def test_lockstep_state_per_account_in_a_run_is_bounded() -> None:
    ids = _ids(20_000)
    xs = [[{"account_id": a, "ts": T0 + m * 60.0, "org": "org_" + a[5:],
            "payment": "pm_" + a[-12:], "first_ts": T0 + m * 60.0 + 1.0,
            "last_ts": T0 + m * 60.0 + 2.0} for a in ids] for m in range(3)]

    def feed(det, ids):
        for minute in xs:
            for x in minute:
                det.learn_one(x)

    per_new = _bytes_per_account(CoactivityDetector(), feed, ids)
    per_ref = _bytes_per_account(ReferenceCoactivity(), feed, ids)
    # The packed record, its dict entry and three list entries against a list of six
    # objects and three minute sets.
    assert per_new < 160, per_new
    assert per_ref > 2.5 * per_new, (per_ref, per_new)


def test_baseline_is_one_exactly_sized_array_and_round_trips() -> None:
    import copy
    import gc
    import pickle
    from array import array

    from detectors.baseline import STATE_SIZE, AccountBaseline

    # The floats and the array header, plus one word per slot: no second object.
    exact = sys.getsizeof(array("d", [0.0]) * STATE_SIZE) + 8 * len(AccountBaseline.__slots__)
    b = AccountBaseline(grace_period=3, threshold=4.0, account_id="a1")
    for i in range(4):
        b.learn_one({"requests": 10.0 + i, "output_tokens": 5000.0})
        b.observe(60.0 * i, 60.0 * i + 30, 3, 900, 1.0, 0.2, 0.0, 1)
    assert sys.getsizeof(b) == b.nbytes() == exact and len(b) == STATE_SIZE
    assert not [r for r in gc.get_referents(b) if isinstance(r, array)]
    c = AccountBaseline.from_bytes(b.to_bytes())
    assert sys.getsizeof(c) == exact
    assert c.to_bytes() == b.to_bytes() and c.tobytes() == b.tobytes()
    assert c.account_id is None  # the id is the record's key, not part of the blob
    # Copies keep the slots (array's own copy and pickle would drop them).
    for d in (copy.copy(b), copy.deepcopy(b), pickle.loads(pickle.dumps(b))):
        assert type(d) is type(b) and isinstance(d, AccountBaseline) and d is not b
        assert d.to_bytes() == b.to_bytes() and d.account_id == "a1"
        assert d.score_one({"requests": 50.0, "output_tokens": 1e5}) == \
            b.score_one({"requests": 50.0, "output_tokens": 1e5})


def test_evicting_accounts_that_moved_or_were_dropped_from_a_bucket() -> None:
    from detectors.events import Event
    from detectors.pipeline import Detection

    t0, hour = 1_767_600_000.0, 3600.0

    def ev(a: str, ts: float) -> Event:
        return Event(a, ts, "m", 100, 400, event_id=f"{a}@{ts}")

    det = Detection(window_s=60, lateness_s=0, account_ttl_s=hour)
    for a in ("stay", "move", "drop", "back"):
        det.add(ev(a, t0 + 1))
    det.advance(t0 + 60)
    det.drop_accounts({"drop", "back"})  # a rebalance took them
    det.add(ev("back", t0 + 120))  # and one came back in the same bucket
    det.advance(t0 + 180)
    det.pop_touched()  # saved by the worker
    evicted: set[str] = set()
    for w in range(4, 200):
        if w % 20 == 0:
            det.add(ev("move", t0 + w * 60 + 1))  # keeps moving to newer buckets
        det.advance(t0 + w * 60 + 60)
        touched = det.pop_touched()
        evicted |= {a for a in touched if det.export_account(a) is None}
    # "drop" had no state left to evict: it is not touched, nor counted, a second time.
    assert evicted == {"stay", "back"}
    assert det.accounts_evicted == 2
    assert det.export_account("move") is not None
    assert set(det._baselines) == {"move"}
    assert sum(map(len, det._by_bucket.values())) <= len(det._by_bucket) + 1


def test_accounts_active_all_along_keep_no_entry_in_every_bucket_they_passed() -> None:
    from detectors.events import Event
    from detectors.pipeline import Detection

    t0, hour = 1_767_600_000.0, 3600.0
    det = Detection(window_s=60, lateness_s=0, account_ttl_s=hour)  # a bucket: 60 s
    ids = [f"busy{i}" for i in range(50)]
    for w in range(90):  # more buckets than the TTL keeps alive
        for a in ids:
            det.add(Event(a, t0 + w * 60 + 1, "m", 100, 400, event_id=f"{a}@{w}"))
        det.advance(t0 + w * 60 + 60)
    assert det.active_accounts == 50 and det.accounts_evicted == 0
    assert len(det._by_bucket) > 50  # the buckets of the last hour are all alive
    # Each move left a stale entry; the lists are compacted: not 50 entries per bucket.
    entries = sum(map(len, det._by_bucket.values()))
    assert entries <= 2 * 50 + len(det._by_bucket), entries


def test_accounts_in_long_runs_keep_no_entry_in_every_minute_not_yet_judged() -> None:
    det = CoactivityDetector(warmup_minutes=0)
    ids = _ids(300)
    for minute in range(40):
        t = T0 + minute * 60.0
        for a in ids:
            det.learn_one({"account_id": a, "ts": t, "org": None, "first_ts": t + 1.0,
                           "last_ts": t + 2.0})
        det.end_window(t, t + 60.0)
    assert det.tracked["in_run"] == 300
    assert len(det._by_last) >= det.gap_minutes  # the lists not judged yet
    entries = sum(map(len, det._by_last.values()))
    # One entry per run and minute moved through without the compaction (16 x 300).
    assert entries <= 2 * 300 + len(det._by_last), entries


@pytest.mark.parametrize("seed", [4, 5, 6, 7])
@pytest.mark.parametrize("caps", [(12, 5), (256, 64)])
def test_shared_labels_and_member_lists_keep_the_reference_state(
    seed: int, caps: tuple[int, int]
) -> None:
    """Key members as lists and accounts' keys as the key's shared label object (issue 16):
    the same findings and scores as the reference, the same members per key in the same
    order, the same keys per account; and no account holds its own copy of a key label."""
    max_key_members, max_account_keys = caps
    kw = {"young_days": 30.0, "min_members": 4, "horizon_s": 6 * 3600.0, "hold_s": 3600.0,
          "max_key_members": max_key_members, "max_account_keys": max_account_keys}
    new, ref = CohortDetector(**kw), ReferenceCohort(**kw)
    n_found = 0
    for kind, arg in _cohort_stream(seed):
        if kind == "learn":
            assert new.score_one(arg) == ref.score_one(arg)
            new.learn_one(arg)
            ref.learn_one(arg)
            continue
        fn, fr = new.end_window(arg, arg + 600.0), ref.end_window(arg, arg + 600.0)
        assert fn == fr
        n_found += len(fn)
        assert list(new._keys) == list(ref._keys)
        for k, stat in new._keys.items():
            assert stat.members == list(ref._keys[k].members)
            assert stat.label is k
        for a, rec in new._young.items():
            assert list(rec.keys or ()) == list(ref._young[a].keys or ())
    assert n_found > 0


def test_accounts_keep_the_keys_shared_label_not_their_windows_copy() -> None:
    det = CohortDetector(young_days=30.0)

    def x(a: str, ts: float, band: int = 7) -> dict[str, object]:
        # Labels built afresh, as account_view does every window.
        return {"account_id": a, "ts": ts, "age_days": 0.5, "org": a, "requests": 3,
                "harvest_like": 3, "keys": ["".join(["pay:", "card"]),
                                            f"tplb:0:{band:06x}", f"tplb:1:{band + 2:06x}"]}

    det.learn_one(x("a1", T0))
    det.learn_one(x("a2", T0 + 60.0))
    det.learn_one(x("a1", T0 + 120.0))
    labels = {k: stat.label for k, stat in det._keys.items()}
    assert len(labels) == 3 and all(k is v for k, v in labels.items())
    for a in ("a1", "a2"):
        keys = det._young[a].keys or {}
        assert list(keys) == list(labels)
        assert all(k is labels[k] for k in keys)
    assert all(stat.members == ["a1", "a2"] for stat in det._keys.values())
