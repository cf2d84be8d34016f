"""Same alerts at any speed: a worker that lags, reads a backfill, is fed slowly or is killed
and restarted in the middle raises exactly the alerts ``replay`` raises over the same
events (by id), and counts no event as late, because each partition's events arrive in time
order."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from streams.config import load_config
from streams.replay import replay_records
from tests.conftest import FAST_WORKER_ENV, isolated_topics, produce, read_topic

pytestmark = pytest.mark.integration

TINY = Path(__file__).parents[2] / "scenarios" / "tiny.toml"
# One-minute windows as in production, one second of lateness.
ENV = {**FAST_WORKER_ENV, "DISTILLWATCH_WINDOWS__SIZE_S": "60"}


def _tiny_records(end_ago_s: float) -> tuple[list[tuple[bytes, bytes]], float]:
    """The tiny scenario (a 120-account hydra and a ramping account among 300 benign ones),
    its history ending ``end_ago_s`` seconds ago; (key, value) records in time order."""
    from simulator.generate import generate
    from simulator.produce import shift
    from simulator.scenario import load_scenario
    from simulator.writer import account_ids, write_events

    sim = generate(load_scenario(TINY), 1)
    shift(sim, time.time() - end_ago_s - float(sim.events.ts[-1]))
    import io

    buf = io.BytesIO()
    write_events(sim, buf)
    lines = buf.getvalue().splitlines()
    ids = account_ids(sim)
    keys = [ids[a].encode() for a in sim.events.acct.tolist()]
    return list(zip(keys, lines, strict=True)), float(sim.events.ts[-1])


def _replay_opened(records: list[tuple[bytes, bytes]], cutoff: float) -> set[str]:
    changes = replay_records(load_config(environ=ENV), records)
    return {c["alert_id"] for c in changes if c["state"] == "opened" and c["window_end"] < cutoff}


def _produce_steadily(broker: Any, topic: str, records: list[tuple[bytes, bytes]],
                      per_s: float) -> None:
    """A slow, steady producer: ``per_s`` events a second, in time order, through one
    connection (a producer that reconnected per batch would stall on a loaded machine, and a
    stall longer than the lateness while the worker is caught up is the one case where late
    events are expected; docs/state.md)."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    try:
        step = max(1, int(per_s / 10))
        for i in range(0, len(records), step):
            t0 = time.monotonic()
            for key, value in records[i : i + step]:
                p.send(topic, key=key, value=value)
            p.flush()
            time.sleep(max(0.0, step / per_s - (time.monotonic() - t0)))
    finally:
        p.close()


def _check(broker: Any, topic: str, want: set[str], cutoff: float, workers: list[Any]) -> None:
    assert want, "the tiny scenario should raise alerts before its last minutes"
    recs = read_topic(broker, topic, until=lambda rs: want <= {r["alert_id"] for r in rs},
                      timeout=150)
    got = {r["alert_id"] for r in recs if r["state"] == "opened" and r["window_end"] < cutoff}
    logs = "\n".join(w.log() for w in workers)
    assert got == want, f"missing {sorted(want - got)}, extra {sorted(got - want)}\n{logs}"
    for w in workers:
        if w.proc.poll() is None:
            assert w.metric("distillwatch_events_late_total") == 0, w.log()


def test_a_slow_worker_reading_a_backfill_equals_replay(broker, worker_factory) -> None:
    """The whole scenario is on the topic before the worker starts, and the worker stalls
    after every batch as a CPU-starved one would."""
    records, last = _tiny_records(end_ago_s=60)
    cutoff = last - 180
    want = _replay_opened(records, cutoff)
    topics, env = isolated_topics()
    produce(broker, topics.requests, records)
    worker = worker_factory(**env, **ENV, DISTILLWATCH_WORKER__SLOW_BATCH_S="1.5")
    _check(broker, topics.alerts, want, cutoff, [worker])


def test_a_slow_steady_producer_of_history_and_a_lagging_worker_equal_replay(
    broker, worker_factory
) -> None:
    """Six hours of history trickle in at 300 events/s while the worker stalls 0.3 s per
    batch: partitions are caught up one moment and behind the next."""
    records, last = _tiny_records(end_ago_s=60)
    cutoff = last - 180
    want = _replay_opened(records, cutoff)
    topics, env = isolated_topics()
    worker = worker_factory(**env, **ENV, DISTILLWATCH_WORKER__SLOW_BATCH_S="0.3")
    _produce_steadily(broker, topics.requests, records, per_s=300)
    _check(broker, topics.alerts, want, cutoff, [worker])


def test_a_worker_killed_and_restarted_in_the_middle_equals_replay(
    broker, worker_factory
) -> None:
    """kill -9 half-way through; a new process with the same group and data directory
    restores the account state and carries on from the committed offsets."""
    import signal

    records, last = _tiny_records(end_ago_s=60)
    cutoff = last - 180
    want = _replay_opened(records, cutoff)
    topics, env = isolated_topics()
    group = {"DISTILLWATCH_WORKER__APP_ID": f"dw-restart-{uuid.uuid4().hex[:8]}"}
    first = worker_factory(**env, **ENV, **group)
    half = len(records) // 2
    _produce_steadily(broker, topics.requests, records[:half], per_s=600)
    time.sleep(2.0)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    second = worker_factory(**env, **ENV, **group)
    _produce_steadily(broker, topics.requests, records[half:], per_s=600)
    _check(broker, topics.alerts, want, cutoff, [second])
