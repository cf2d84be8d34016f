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


def test_watermark_waits_for_the_slowest_partition():
    stage, _, _ = _stage()
    stage.assigned([0, 1])
    # Partition 1 has delivered nothing and no fetch has described it: nothing may close.
    assert stage.handle([(_ev("a", T0 + 50, 1), 0, 0)], now=T0).findings == []
    first = stage.handle([(_ev("b", T0, 1), 1, 0)], now=T0)
    assert first.findings == []
    # Partition 0 races 100 s ahead; partition 1 is still at T0: nothing of p1 is late.
    res = stage.handle([(_ev("a", T0 + 100, 2), 0, 1)], now=T0 + 5)
    assert res.findings == []
    res = stage.handle([(_ev("b", T0 + 25, 3), 1, 1)], now=T0 + 5)
    assert stage.detection.windower.late_events == 0
    assert res.findings[-1] == {"type": "watermark", "ts": T0 + 25}


def test_a_lagging_partition_holds_the_watermark_however_long_it_takes():
    stage, _, _ = _stage()
    stage.handle([(_ev("a", T0, 1), 0, 0), (_ev("b", T0, 1), 1, 0)], now=T0)
    stage.fetched(0, position=1, end_offset=1, at=T0)
    # Partition 1 has 999 records the worker has not read yet (a backlog, a slow worker).
    stage.fetched(1, position=1, end_offset=1000, at=T0)
    for minute in range(1, 30):
        now = T0 + 60 * minute
        stage.handle([(_ev("a", T0 + 5 * minute, minute + 1), 0, minute)], now=now)
        stage.fetched(0, position=minute + 1, end_offset=minute + 1, at=now)
        stage.fetched(1, position=1, end_offset=1000, at=now)
        assert stage.tick(now=now) == []
    # When its records come, none is late: they are all after the watermark.
    res = stage.handle([(_ev("b", T0 + 1 + i, i + 2), 1, i + 1) for i in range(60)],
                       now=T0 + 2000)
    assert stage.detection.windower.late_events == 0
    assert res.findings[-1] == {"type": "watermark", "ts": T0 + 60}


def test_timer_closes_windows_only_for_time_the_broker_vouches_for():
    stage, _, reg = _stage()
    stage.handle([(_ev("a", T0, 1), 0, 0)], now=T0)
    stage.fetched(0, position=1, end_offset=1, at=T0 + 3)
    assert stage.tick(now=T0 + 3) == []  # quiet for 3 s: the window [T0, T0 + 10) is open
    # A stalled worker makes no fetches: however late the clock, nothing is proven.
    assert stage.tick(now=T0 + 1000) == []
    stage.fetched(0, position=1, end_offset=1, at=T0 + 30)
    out = stage.tick(now=T0 + 30)
    assert out and out[-1] == {"type": "watermark", "ts": T0 + 30}
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
    ingest.fetched(0, position=n + 1, end_offset=n + 1, at=now + 200)
    changes = [c for msg in res.findings + ingest.tick(now=now + 200) for c in alerts.handle(msg)]
    opened = [c for c in changes if c["state"] == "opened"]
    assert [(c["entity_id"], c["detector"]) for c in opened] == [("a", "account_baseline")]
    assert any(c["state"] == "resolved" for c in changes)


def test_the_account_stage_sends_big_key_batches_in_chunks(monkeypatch):
    """Issue 16: a window's key batch grows with its accounts; the account stage writes it
    in chunks under the budget, all of them before the watermarks."""
    import streams.stages as stages
    from detectors.keycount import KeyCounter
    from detectors.summary import decode, encode_chunks

    monkeypatch.setattr(stages, "encode_chunks", lambda rec: encode_chunks(rec, budget=4096))
    stage, _, _ = _stage()
    stage.key_parts = 2
    stage.assigned([0])
    stage.fetched(0, position=0, end_offset=0, at=T0)
    evs = [(orjson.dumps({"account_id": f"a{i:04d}", "ts": T0 + i * 0.01, "model": "m",
                          "input_tokens": 1, "output_tokens": 10, "event_id": f"e{i}",
                          "ip": f"10.1.{i // 200}.{i % 200}", "payment_fingerprint": f"pf{i}"}),
            0, i) for i in range(600)]
    stage.handle(evs, now=T0)
    stage.handle([(_ev("z", T0 + 30, 1), 0, 600)], now=T0 + 30)
    out = stage.pop_cluster_records()
    recs = [(q, decode(v)) for q, v in out]
    assert all(len(v) <= 4096 for _, v in out)
    counted = 0
    for q in (0, 1):
        kbs = [r for p, r in recs if p == q and r["t"] == "kb" and r["w"] == T0]
        assert len(kbs) > 1 and [r["chunk"] for r in kbs] == list(range(kbs[0]["chunks"]))
        # Every chunk before the watermark that closes the window on its partition.
        mine = [r for p, r in recs if p == q]
        closing = next(i for i, r in enumerate(mine) if r["t"] == "wm" and r["b"] > T0)
        assert all(i < closing for i, r in enumerate(mine) if r["t"] == "kb")
        kc = KeyCounter(window_s=10, cluster_windows=10, sources=1)
        assert all(kc.add(r) for r in kbs)
        counted += sum(n for r in kbs for _, n, _ in r["keys"])
    # The /24 and the payment card of each of the 600 account-windows: none lost or doubled.
    assert counted == 2 * 600
