"""The agents' work without Kafka: validation routing, watermark, timer, alert folding."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry

from streams.config import load_config
from streams.metrics import Metrics
from streams.stages import AlertStage, IngestStage

T0 = 1_800_000_000.0


def _stage(**env: str):
    cfg = load_config(
        environ={
            "DISTILLWATCH_WINDOWS__SIZE_S": "10",
            "DISTILLWATCH_WINDOWS__LATENESS_S": "0",
            "DISTILLWATCH_WINDOWS__IDLE_PARTITION_S": "5",
            "DISTILLWATCH_DETECTION__ACCOUNT_GRACE": "3",
            **env,
        }
    )
    reg = CollectorRegistry()
    alert_stage = AlertStage(cfg, Metrics.create(CollectorRegistry()))
    return IngestStage(cfg, Metrics.create(reg)), alert_stage, reg


def _ev(acct: str, ts: float, n: int) -> bytes:
    return orjson.dumps(
        {"account_id": acct, "ts": ts, "model": "m", "input_tokens": 1, "output_tokens": 10,
         "event_id": f"{acct}-{n}"}
    )


def test_bad_payloads_go_to_dlq_with_position_and_are_counted():
    stage, _, reg = _stage()
    res = stage.handle([(b"nope", 2, 41), (_ev("a", T0, 1), 2, 42)], now=T0)
    assert [(r["reason"], r["partition"], r["offset"]) for r in res.dlq] == [("not_json", 2, 41)]
    assert reg.get_sample_value("distillwatch_events_invalid_total", {"reason": "not_json"}) == 1
    assert reg.get_sample_value("distillwatch_events_valid_total") == 1


def test_watermark_waits_for_the_slowest_active_partition():
    stage, _, _ = _stage()
    # Start-up: no window closes in the first idle_partition_s.
    first = stage.handle([(_ev("a", T0, 1), 0, 0), (_ev("b", T0, 1), 1, 0)], now=T0)
    assert first.findings == []
    now = T0 + 5
    # Partition 0 races 100 s ahead; partition 1 is still at T0 + 5: nothing of p1 is late.
    res = stage.handle([(_ev("a", T0 + 100, 2), 0, 1)], now=now)
    assert res.findings == []
    res = stage.handle([(_ev("b", T0 + 25, 3), 1, 1)], now=now)
    assert stage.detection.windower.late_events == 0
    assert res.findings[-1] == {"type": "watermark", "ts": T0 + 25}
    # Once partition 1 has been silent long enough, it no longer holds the watermark.
    res = stage.handle([(_ev("a", T0 + 101, 4), 0, 2)], now=now + 10)
    assert res.findings and res.findings[-1] == {"type": "watermark", "ts": T0 + 101}


def test_timer_closes_windows_when_traffic_stops():
    stage, _, reg = _stage()
    stage.handle([(_ev("a", T0, 1), 0, 0)], now=T0)
    assert stage.tick(now=T0 + 3) == []  # still in the start-up grace
    out = stage.tick(now=T0 + 30)
    assert out and out[-1]["type"] == "watermark"
    assert reg.get_sample_value("distillwatch_windows_closed_total") == 1


def test_ramp_to_alert_through_both_stages():
    ingest, alerts, _ = _stage()
    now = T0 + 100
    batch, n = [], 0
    for w in range(8):
        for i in range(3 if w < 6 else 60):
            n += 1
            batch.append((_ev("a", T0 + w * 10 + i * 0.1, n), 0, n))
    res = ingest.handle(batch, now=now)
    changes = [c for msg in res.findings + ingest.tick(now=now + 200) for c in alerts.handle(msg)]
    opened = [c for c in changes if c["state"] == "opened"]
    assert [(c["entity_id"], c["detector"]) for c in opened] == [("a", "account_baseline")]
    assert any(c["state"] == "resolved" for c in changes)
