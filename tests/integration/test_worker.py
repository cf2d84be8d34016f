"""The worker end to end on a real Tansu broker: alerts, DLQ, metrics, redelivery."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import pytest

from tests.conftest import isolated_topics, produce, read_topic

pytestmark = pytest.mark.integration

WINDOW_S = 2.0


def history_start(now: float) -> float:
    """Where :func:`_traffic`'s 40 s of history start: on a window boundary. Otherwise each
    simulated window straddles two of the worker's epoch-aligned ones, and for about a
    quarter of the phases of ``now`` the ramp is cut so that no window clears the threshold
    (replay agrees: the data, not the worker, decides)."""
    return (now - 40.0) // WINDOW_S * WINDOW_S


def _traffic(now: float) -> list[tuple[bytes, bytes]]:
    """40 s of history in 2 s windows: 30 Poisson-ish benign accounts and one account that
    ramps 20x over the last 8 s."""
    rng = random.Random(7)
    start = history_start(now)
    out: list[tuple[bytes, bytes]] = []
    accounts = [f"benign-{i}" for i in range(30)] + ["ramp-1"]
    n = 0
    for w in range(20):
        for acct in accounts:
            rate = 4
            if acct == "ramp-1" and w >= 16:
                rate = 80
            for _ in range(rate + rng.randint(-1, 1)):
                n += 1
                ev = {
                    "event_id": f"e{n}",
                    "account_id": acct,
                    "ts": start + w * WINDOW_S + rng.random() * WINDOW_S,
                    "model": "model-a",
                    "input_tokens": rng.randint(50, 200),
                    "output_tokens": rng.randint(100, 400),
                    "tier": "pro",
                }
                out.append((acct.encode(), orjson.dumps(ev)))
    out.sort(key=lambda kv: orjson.loads(kv[1])["ts"])
    return out


def _bad(now: float) -> dict[str, bytes]:
    return {
        "not_json": b"{not json",
        "not_object": b"[1, 2]",
        "missing_field": orjson.dumps({"account_id": "x", "ts": now, "model": "m"}),
        "wrong_type": orjson.dumps(
            {"account_id": "x", "ts": "now", "model": "m", "input_tokens": 1, "output_tokens": 1}
        ),
        "bad_tokens": orjson.dumps(
            {"account_id": "x", "ts": now, "model": "m", "input_tokens": -5, "output_tokens": 1}
        ),
        "bad_ts": orjson.dumps(
            {"account_id": "x", "ts": now + 10 * 86400, "model": "m",
             "input_tokens": 1, "output_tokens": 1}
        ),
        "too_large": b'{"pad": "' + b"x" * 70_000 + b'"}',
    }


def _opened(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["state"] == "opened"]


def test_worker_alerts_dlq_metrics_and_redelivery(broker, worker_factory):
    topics, env = isolated_topics()
    worker = worker_factory(**env)
    now = time.time()
    traffic = _traffic(now)
    bad_cases = _bad(now)
    bad = [(None, v) for v in bad_cases.values()]
    produce(broker, topics.requests, traffic + bad)

    alerts = read_topic(
        broker,
        topics.alerts,
        until=lambda rs: any(r["entity_id"] == "ramp-1" for r in rs),
        timeout=120,  # returns as soon as it holds; the margin is for a loaded CI machine
    )
    ramp = [a for a in _opened(alerts) if a["entity_id"] == "ramp-1"]
    assert ramp, f"no alert for the ramping account; {worker.diagnosis()}"
    ev = ramp[0]["evidence"]
    assert ev["baseline"]["requests"] < 10
    assert ev["features"]["requests"] > 3 * ev["baseline"]["requests"]
    assert ev["score"] >= ev["threshold"]
    assert {"signal", "score"} <= set(ev["signals"][0])

    dlq = read_topic(broker, topics.requests_dlq, until=lambda rs: len(rs) >= len(bad))
    reasons = sorted(r["reason"] for r in dlq)
    assert reasons == sorted(bad_cases)
    big = next(r for r in dlq if r["reason"] == "too_large")
    assert big["truncated"] and big["payload_size"] > 70_000
    assert all(r["partition"] is not None and r["offset"] is not None for r in dlq)

    # Let the last windows close on the wall-clock timer, then check the counters.
    time.sleep(WINDOW_S * 2)
    assert worker.metric("distillwatch_events_consumed_total") == len(traffic) + len(bad)
    assert worker.metric("distillwatch_events_valid_total") == len(traffic)
    assert worker.metric("distillwatch_events_invalid_total", {"reason": "not_json"}) == 1
    assert worker.metric("distillwatch_events_invalid_total", {"reason": "bad_ts"}) == 1
    assert worker.metric("distillwatch_windows_closed_total") >= 15
    assert (worker.metric("distillwatch_findings_total",
                          {"detector": "account_baseline"}) or 0) >= 1
    assert worker.metric("distillwatch_active_accounts") == 31
    # Every owned partition reports its lag (set at each poll), and all of it is consumed.
    assert [worker.metric("distillwatch_consumer_lag_messages", {"partition": str(p)})
            for p in range(4)] == [0.0] * 4
    metrics_text = worker.metrics_text()
    assert "ramp-1" not in metrics_text and "benign-" not in metrics_text

    # Redelivery: the same events again (same event_ids) must not create a new alert id.
    before = {a["alert_id"] for a in alerts}
    produce(broker, topics.requests, traffic)
    time.sleep(WINDOW_S * 3)
    after = read_topic(broker, topics.alerts, until=lambda rs: False, timeout=3)
    assert {a["alert_id"] for a in _opened(after)} <= before
    assert worker.metric("distillwatch_events_late_total") >= len(traffic)

    # No benign account alerted.
    flagged = {a["entity_id"] for a in _opened(after)}
    assert not {f for f in flagged if f.startswith("benign-")}
