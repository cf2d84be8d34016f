"""Faust sensor export: the monitor feeds fixed-name metrics in seconds; offsets at scrape."""

from __future__ import annotations

from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.app import build_app
from streams.config import Config
from streams.faust_metrics import PrometheusMonitor


def _val(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(f"distillwatch_faust_{name}", labels)


def test_build_app_installs_monitor_and_collectors():
    reg = CollectorRegistry()
    app = build_app(Config(), reg)
    monitor = app.monitor
    assert isinstance(monitor, PrometheusMonitor)

    state = monitor.on_commit_initiated(consumer=None)
    monitor.on_commit_completed(consumer=None, state=state - 0.2)  # a commit that took 0.2 s
    assert _val(reg, "commit_latency_seconds_count") == 1
    assert 0.2 <= _val(reg, "commit_latency_seconds_sum") < 1.0
    # Faust's own bookkeeping still runs (its monitor is what `faust` CLI tools read).
    assert len(monitor.commit_latency) == 1

    monitor.on_rebalance_start(app)
    assert _val(reg, "rebalances_total") == 1
    assert _val(reg, "assignments_total", result="error") == 0

    tp = TP("requests", 2)
    monitor.track_tp_end_offset(tp, 120)
    monitor.on_tp_commit({tp: 100})
    assert _val(reg, "end_offset", topic="requests", partition="2") == 120
    assert _val(reg, "committed_offset", topic="requests", partition="2") == 100
    # A rebalance clears Faust's offsets: the series go away instead of going stale.
    monitor.on_rebalance_end(app, {"time_start": monitor.time() - 1.5})
    assert _val(reg, "end_offset", topic="requests", partition="2") is None
    assert _val(reg, "rebalance_seconds_count") == 1
    assert _val(reg, "rebalance_seconds_sum") >= 1.5

    # The ranking collector is registered next to the lead's metrics.
    assert reg.get_sample_value(
        "distillwatch_flagged_entities", {"entity_type": "cluster", "severity": "critical"}
    ) == 0


def test_send_hooks_count_by_topic_and_time_in_seconds():
    reg = CollectorRegistry()
    monitor = build_app(Config(), reg).monitor
    state = monitor.on_send_initiated(None, "alerts", None, 3, 100)
    monitor.on_send_completed(None, state - 0.05, None)
    monitor.on_send_initiated(None, "alerts", None, 3, 100)
    monitor.on_send_error(None, RuntimeError("broker gone"), state)
    assert _val(reg, "messages_sent_total", topic="alerts") == 2
    assert _val(reg, "send_errors_total") == 1
    assert _val(reg, "send_latency_seconds_count") == 1
    assert 0.05 <= _val(reg, "send_latency_seconds_sum") < 1.0
    # Faust's own counters still move (its `Monitor.asdict()` feeds faust's tooling).
    assert monitor.messages_sent == 2 and monitor.send_errors == 1
