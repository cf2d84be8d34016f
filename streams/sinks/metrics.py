"""Prometheus metrics of alert delivery, declared once (same style as streams/metrics.py).

The ``sink`` label takes values from :data:`SINKS` only: several webhook URLs share the
``webhook`` series, and no URL, account id or alert id is ever a label.
"""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["DECISIONS", "SINKS", "SinkMetrics"]

SINKS = ("slack", "webhook", "suspension")
#: Outcomes the suspension hook records on the actions topic.
DECISIONS = (
    "executed",
    "dry_run",
    "skipped",
    "pending_approval",
    "approved",
    "denied",
    "failed",
)


class SinkMetrics(NamedTuple):
    queued: Gauge
    sent: Counter
    retried: Counter
    failed: Counter
    dead_lettered: Counter
    actions: Counter
    breaker_open: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry, prefix: str = "distillwatch") -> SinkMetrics:
        m = cls(
            queued=Gauge(
                f"{prefix}_sink_queued",
                "Alert deliveries waiting in a sink's bounded queue (including the one in flight)",
                ["sink"],
                registry=registry,
            ),
            sent=Counter(
                f"{prefix}_sink_sent",
                "Requests a sink completed successfully",
                ["sink"],
                registry=registry,
            ),
            retried=Counter(
                f"{prefix}_sink_retried",
                "Delivery attempts that failed and were retried (429 included)",
                ["sink"],
                registry=registry,
            ),
            failed=Counter(
                f"{prefix}_sink_failed",
                "Deliveries given up on (retries exhausted, permanent error or full queue); "
                "each goes to alerts-dlq",
                ["sink"],
                registry=registry,
            ),
            dead_lettered=Counter(
                f"{prefix}_sink_dead_lettered",
                "Records written to alerts-dlq, by reason",
                ["sink", "reason"],
                registry=registry,
            ),
            actions=Counter(
                f"{prefix}_sink_actions",
                "Suspension-hook decisions written to the actions topic, by action and decision",
                ["action", "decision"],
                registry=registry,
            ),
            breaker_open=Gauge(
                f"{prefix}_sink_breaker_open",
                "1 while the suspension hook's action budget is exhausted (circuit open)",
                registry=registry,
            ),
        )
        # Fixed series exist from the start so dashboards and rules see zeros, not gaps.
        for sink in SINKS:
            m.queued.labels(sink)
            m.sent.labels(sink)
            m.retried.labels(sink)
            m.failed.labels(sink)
        return m
