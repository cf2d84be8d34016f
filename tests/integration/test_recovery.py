"""Scale-out and recovery on the embedded broker: two workers in one group, one killed with
SIGKILL mid-stream; the survivor restores its partitions' state from the changelog and the
campaign alerts still open exactly once, with the ids an uninterrupted offline run gives."""

from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
import uuid
from typing import Any

import orjson
import pytest
from kafka.partitioner.default import murmur2

from detectors.events import event_from_dict
from detectors.pipeline import Monitor
from streams.config import load_config
from tests.conftest import FAST_WORKER_ENV, isolated_topics, read_topic

pytestmark = pytest.mark.integration

PARTITIONS = 4
BENIGN = [f"user-{i}" for i in range(24)]


def _partition(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def _ramp_accounts() -> list[str]:
    """One ramping account on every partition: whichever worker dies owned some of them."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < PARTITIONS:
        found.setdefault(_partition(f"ramp-{i}"), f"ramp-{i}")
        i += 1
    return sorted(found.values())


class LiveTraffic(threading.Thread):
    """Events stamped with the wall clock, as a gateway would send them; ramp accounts go
    ~65x from ``ramp_at`` (wall time) on."""

    def __init__(self, broker: Any, topic: str, ramps: list[str]) -> None:
        super().__init__(daemon=True)
        self.broker, self.topic, self.ramps = broker, topic, ramps
        self.ramp_at = float("inf")
        self.stop = threading.Event()
        self.sent: list[bytes] = []

    def run(self) -> None:
        from kafka import KafkaProducer

        rng = random.Random(3)
        n = 0
        # One connection for the whole run: a producer per batch reconnects every second, and
        # on a loaded machine a reconnect can stall past the 1 s lateness, which makes live
        # events late by contract (and the test is about recovery, not about that).
        producer = KafkaProducer(bootstrap_servers=self.broker.bootstrap, linger_ms=5)
        try:
            while not self.stop.is_set():
                now = time.time()
                batch = []
                for acct in BENIGN + self.ramps:
                    k = 1 if rng.random() < 0.5 else 2  # ~3 per 2 s window
                    if acct in self.ramps and now >= self.ramp_at:
                        k = 100
                    for _ in range(k):
                        n += 1
                        ev = {"event_id": f"r{n}", "account_id": acct,
                              "ts": now - rng.random() * 0.5, "model": "m",
                              "input_tokens": 100, "output_tokens": 300, "tier": "pro"}
                        batch.append((acct.encode(), orjson.dumps(ev)))
                for key, value in batch:
                    producer.send(self.topic, key=key, value=value)
                producer.flush()
                self.sent.extend(v for _, v in batch)
                self.stop.wait(1.0)
        finally:
            producer.close()


def _opened(broker: Any, topic: str) -> list[dict[str, Any]]:
    recs = read_topic(broker, topic, until=lambda rs: False, timeout=3)
    return [r for r in recs if r["state"] == "opened"]


def _wait_for(pred: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _owned(log: str) -> list[int]:
    """Partitions of the worker's newest assignment, from its 'restored state' log line."""
    line = [ln for ln in log.splitlines() if "restored state of" in ln][-1]
    return [int(p) for p in line.split("partitions [")[1].split("]")[0].split(",") if p.strip()]


def test_kill_one_of_two_workers_state_restored_alerts_open_once(broker, worker_factory, tmp_path):
    topics, env = isolated_topics()
    env["DISTILLWATCH_WORKER__APP_ID"] = f"dw-rec-{uuid.uuid4().hex[:6]}"
    ramps = _ramp_accounts()
    a = worker_factory(**env, DISTILLWATCH_WORKER__DATA_DIR=str(tmp_path / "a"))
    b = worker_factory(**env, DISTILLWATCH_WORKER__DATA_DIR=str(tmp_path / "b"))
    traffic = LiveTraffic(broker, topics.requests, ramps)
    traffic.start()
    try:
        # Both workers own partitions and have saved state before the crash.
        _wait_for(
            lambda: _owned(a.log(None)) and _owned(b.log(None))
            if "restored state" in a.log(None) and "restored state" in b.log(None)
            else False,
            60,
            "both workers to own partitions",
        )
        time.sleep(12)
        dead_partitions = _owned(a.log(None))
        restores_before = b.log(None).count("restored state")
        os.kill(a.proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        killed_wall = time.time()
        recovery = _wait_for(
            lambda: b.log(None).count("restored state") > restores_before,
            60,
            "the survivor to take over",
        )
        print(
            f"\nrecovery: the survivor restored the state of partitions {dead_partitions} "
            f"{recovery:.1f} s after SIGKILL"
        )
        assert set(dead_partitions) <= set(_owned(b.log(None)))
        took_over_wall = time.time()
        # The ramp starts after the span whose events the crash may cost (docs/state.md;
        # bounded below): an alert on a ramp that began inside it may rightly differ.
        time.sleep(
            float(FAST_WORKER_ENV["DISTILLWATCH_WINDOWS__SIZE_S"])
            + float(FAST_WORKER_ENV["DISTILLWATCH_WINDOWS__LATENESS_S"])
            + 1.0
        )
        traffic.ramp_at = math.ceil(time.time() / 2) * 2  # a window boundary
        time.sleep(16)
        # The killed worker comes back and the group rebalances onto both again.
        a2 = worker_factory(**env, DISTILLWATCH_WORKER__DATA_DIR=str(tmp_path / "a"))
        _wait_for(lambda: "restored state" in a2.log(None), 60, "the restarted worker to rejoin")
        took = time.monotonic() - killed_at
        print(f"rebalanced back onto two workers {took:.1f} s after SIGKILL")
        time.sleep(6)
    finally:
        traffic.stop.set()
        traffic.join()
    time.sleep(6)  # the last windows close on the timer

    # What the crash cost: only events of the dead worker's partitions from the windows that
    # were still open at its last checkpoint up to the takeover may arrive late and be dropped
    # (docs/state.md). Everything else is counted, and nothing twice.
    late = b.metric("distillwatch_events_late_total") or 0.0
    window_s = float(FAST_WORKER_ENV["DISTILLWATCH_WINDOWS__SIZE_S"])
    lateness = float(FAST_WORKER_ENV["DISTILLWATCH_WINDOWS__LATENESS_S"])
    exposed_from = killed_wall - 2 * window_s - lateness - 1.0  # last checkpoint's open windows
    exposed = [
        e for e in map(orjson.loads, traffic.sent)
        if _partition(e["account_id"]) in dead_partitions
        and exposed_from <= e["ts"] <= took_over_wall + window_s + lateness
    ]
    print(f"events dropped as late by the survivor: {late:.0f} (bound {len(exposed)})")
    assert late <= len(exposed)

    opened = _opened(broker, topics.alerts)
    by_key: dict[tuple[str, str], list[str]] = {}
    for r in opened:
        by_key.setdefault((r["entity_id"], r["detector"]), []).append(r["alert_id"])
    assert all(len(ids) == 1 for ids in by_key.values()), f"duplicate opens: {by_key}"
    assert not [k for k in by_key if k[0].startswith("user-")], by_key

    # The same events through the offline path, with no crash: the same ramp alerts and ids.
    cfg = load_config(environ=FAST_WORKER_ENV)
    mon = Monitor(**cfg.detection_kwargs(), quiet_windows=cfg.detection.quiet_windows)
    events = sorted((orjson.loads(v) for v in traffic.sent), key=lambda e: e["ts"])
    changes = []
    for e in events:
        changes += mon.add(event_from_dict(e, now=e["ts"]))
    changes += mon.flush()
    expected = {
        (c["entity_id"], c["detector"]): c["alert_id"]
        for c in changes
        if c["state"] == "opened" and c["entity_id"] in ramps
    }
    got = {k: ids[0] for k, ids in by_key.items() if k[0] in ramps}
    assert len({e for e, _ in expected}) >= 2, f"the offline run should catch the ramps: {expected}"

    def on_survivor(alerts: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
        return {k: v for k, v in alerts.items() if _partition(k[0]) not in dead_partitions}

    # The survivor's own partitions lost nothing in the crash: their alerts are the offline
    # run's, id for id (no missing, no extra, same window).
    assert on_survivor(got) == on_survivor(expected)
    # The dead worker's partitions may lose up to the bound above as late events (docs/
    # state.md), in windows before the ramps; that can move a ramp's first alert by a window
    # or alert a ramp the offline run flags a little later (a stress-ng run did both). What
    # must hold there: every alert of the offline run is raised, and once (checked above).
    assert set(expected) <= set(got), (expected, got)
    flagged = {e for e, _ in got}
    moved = [r for r in ramps if _partition(r) in dead_partitions]
    assert moved and all(r in flagged for r in moved), (moved, got)
