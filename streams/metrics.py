"""Every Prometheus metric distillwatch exports, declared once (docs/metrics.md lists them).

Label values come from small fixed sets (reasons, detectors, severities, states, partitions):
never an account id, IP or fingerprint.
"""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from detectors.events import REASONS
from detectors.findings import SEVERITIES

__all__ = ["Metrics"]

# Event time to finding: a window closes lateness_s after its end, plus the tick interval.
_LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600)


class Metrics(NamedTuple):
    events_consumed: Counter
    events_valid: Counter
    events_invalid: Counter
    events_late: Counter
    events_duplicate: Counter
    windows_closed: Counter
    findings: Counter
    alerts: Counter
    alerts_open: Gauge
    finding_latency: Histogram
    consumer_lag: Gauge
    active_accounts: Gauge
    watermark: Gauge
    state_records_rejected: Counter
    accounts_evicted: Counter
    detect_errors: Counter
    dlq_write_failures: Counter
    cluster_records_rejected: Counter
    campaign_watermark: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry, prefix: str = "distillwatch") -> Metrics:
        m = cls(
            events_consumed=Counter(
                f"{prefix}_events_consumed",
                "Messages read from the requests topic",
                registry=registry,
            ),
            events_valid=Counter(
                f"{prefix}_events_valid", "Events that passed validation", registry=registry
            ),
            events_invalid=Counter(
                f"{prefix}_events_invalid",
                "Events rejected to the dead-letter topic, by reason",
                ["reason"],
                registry=registry,
            ),
            events_late=Counter(
                f"{prefix}_events_late",
                "Valid events that arrived after their window closed (not counted)",
                registry=registry,
            ),
            events_duplicate=Counter(
                f"{prefix}_events_duplicate",
                "Valid events whose event_id was already counted (redelivery)",
                registry=registry,
            ),
            windows_closed=Counter(
                f"{prefix}_windows_closed",
                "Event-time window buckets closed and scored",
                registry=registry,
            ),
            findings=Counter(
                f"{prefix}_findings",
                "Detector findings, by detector and severity",
                ["detector", "severity"],
                registry=registry,
            ),
            alerts=Counter(
                f"{prefix}_alerts",
                "Alert state changes written to the alerts topic",
                ["detector", "severity", "state"],
                registry=registry,
            ),
            alerts_open=Gauge(
                f"{prefix}_alerts_open",
                "Alerts currently open, by severity",
                ["severity"],
                registry=registry,
            ),
            finding_latency=Histogram(
                f"{prefix}_finding_latency_seconds",
                "Wall-clock time from a window's event-time end to its findings",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            consumer_lag=Gauge(
                f"{prefix}_consumer_lag_messages",
                "Messages behind the high watermark on the requests topic, by partition",
                ["partition"],
                registry=registry,
            ),
            active_accounts=Gauge(
                f"{prefix}_active_accounts",
                "Accounts with detector state in this worker",
                registry=registry,
            ),
            watermark=Gauge(
                f"{prefix}_watermark_timestamp_seconds",
                "Event-time watermark of the account agent",
                registry=registry,
            ),
            state_records_rejected=Counter(
                f"{prefix}_state_records_rejected",
                "Stored account-state records skipped at restore (never executed), by reason",
                ["reason"],
                registry=registry,
            ),
            accounts_evicted=Counter(
                f"{prefix}_accounts_evicted",
                "Accounts whose state was dropped after detection.account_ttl_s of inactivity",
                registry=registry,
            ),
            detect_errors=Counter(
                f"{prefix}_detect_errors",
                "Account-windows skipped at window close because detection raised (a bug)",
                registry=registry,
            ),
            dlq_write_failures=Counter(
                f"{prefix}_dlq_write_failures",
                "Failed writes to requests-dlq (each is retried; offsets wait for it)",
                registry=registry,
            ),
            cluster_records_rejected=Counter(
                f"{prefix}_cluster_records_rejected",
                "Cluster-stage records that did not decode (dead-lettered), by stage and reason",
                ["stage", "reason"],
                registry=registry,
            ),
            campaign_watermark=Gauge(
                f"{prefix}_campaign_watermark_timestamp_seconds",
                "Event time before which campaign assembly has assembled every window",
                registry=registry,
            ),
        )
        # Pre-create the fixed series so dashboards and rules see zeros, not gaps.
        for reason in REASONS:
            m.events_invalid.labels(reason)
        for sev in SEVERITIES:
            m.alerts_open.labels(sev)
        return m


class RecordMetrics(NamedTuple):
    """Integrity and dead-lettering of the internal topics (streams/integrity.py,
    streams/sinks/intake.py): a forged or poison record is counted, never silently dropped."""

    rejected: Counter
    dlq_write_failures: Counter

    @classmethod
    def create(
        cls,
        registry: CollectorRegistry,
        prefix: str = "distillwatch",
        *,
        dlq_write_failures: Counter | None = None,
    ) -> RecordMetrics:
        """``dlq_write_failures``: the worker passes :attr:`Metrics.dlq_write_failures`, so
        requests-dlq and alerts-dlq failures share one series (one alarm rule)."""
        m = cls(
            rejected=Counter(
                f"{prefix}_records_rejected",
                "Records on findings/alerts not acted on (sent to alerts-dlq), by topic and "
                "reason (bad_signature, not_json, invalid_alert, dispatch_error, ...)",
                ["topic", "reason"],
                registry=registry,
            ),
            dlq_write_failures=dlq_write_failures
            or Counter(
                f"{prefix}_dlq_write_failures",
                "Failed DLQ writes (each is retried; any increase needs a human)",
                registry=registry,
            ),
        )
        for topic in ("findings", "alerts"):
            m.rejected.labels(topic, "bad_signature")
        return m
