"""The Faust application: the ingest service, the alert agent and timers. Thin glue around
:mod:`streams.stages`; ingest bypasses Faust streams for speed (see :mod:`streams.ingest`).

Agents run at concurrency 1: with more, faust-streaming can commit offsets past messages
that are still being processed (faust-streaming issue #606), which breaks at-least-once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import faust
import orjson
from prometheus_client import CollectorRegistry

from streams.cluster import CampaignStageService, KeyStageService
from streams.config import Config
from streams.delivery import install_delivery
from streams.faust_metrics import install as install_faust_metrics
from streams.faust_transport import App
from streams.ingest import IngestService
from streams.integrity import signer_for
from streams.kafka_security import faust_credentials
from streams.logsafe import safe
from streams.metrics import Metrics, RecordMetrics
from streams.sinks.intake import rejected_record
from streams.stages import AlertStage, IngestStage
from streams.topk import TopKCollector, WorstEntities

__all__ = ["build_app", "log_change"]

log = logging.getLogger(__name__)


def log_change(change: Mapping[str, Any]) -> None:
    """One INFO line per alert change. Entity ids are chosen by whoever sends traffic, so
    every value goes through :func:`safe`: a newline or terminal escape in an id cannot
    forge a second log line."""
    log.info(
        "alert %s %s %s/%s severity=%s score=%s",
        *(safe(change.get(k), 200) for k in ("alert_id", "state", "entity_type", "entity_id")),
        safe(change.get("severity"), 20),
        safe(change.get("score"), 40),
    )


def build_app(cfg: Config, registry: CollectorRegistry | None = None) -> faust.App:
    """Build the worker's Faust app for ``cfg``; metrics go to ``registry``."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics.create(registry)
    record_metrics = RecordMetrics.create(
        registry, dlq_write_failures=metrics.dlq_write_failures
    )
    # One key signs findings, alerts, actions and alerts-dlq records and verifies what this
    # worker reads (streams/integrity.py).
    signer = signer_for(cfg)
    app = App(
        cfg.worker.app_id,
        broker=cfg.broker.url,
        broker_credentials=faust_credentials(cfg.broker),  # SASL/TLS: docs/deployment.md
        datadir=cfg.worker.data_dir,
        # The alert table is small and restored from its changelog at every assignment. Not
        # RocksDB: a rebalance while the table is written can leave RocksDB's persisted offset
        # one past the changelog's reported highwater and Faust's recovery then refuses to
        # start (faust-streaming issue #158, reproduced here in the kill -9 test). The large
        # per-account state is in RocksDB through streams/state.py.
        store="memory://",
        processing_guarantee="at_least_once",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=cfg.topics.partitions,
        consumer_auto_offset_reset="earliest",
        # Tansu answers a group join after about the rebalance timeout: keep it short.
        broker_rebalance_timeout=4,
        # A dead worker's findings partition (and alert state) moves within ~10 s, not 60.
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        web_enabled=False,
    )
    install_faust_metrics(app, registry)
    worst = WorstEntities()
    registry.register(TopKCollector(worst))
    t = cfg.topics
    findings = app.topic(t.findings, value_type=bytes, partitions=1)
    alerts = app.topic(t.alerts, value_type=bytes, partitions=1)  # see streams/delivery.py

    ingest = IngestStage(cfg, metrics)
    alert_state = app.Table(
        "alert-state",
        partitions=1,  # co-partitioned with the one-partition findings topic
        key_type=bytes,
        value_type=bytes,
    )
    alert_stage = AlertStage(cfg, metrics, store=alert_state)

    class _Ingest(IngestService):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(cfg, ingest, **kwargs)
            self.signer = signer

    class _Keys(KeyStageService):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(cfg, metrics, **kwargs)

    class _Campaigns(CampaignStageService):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(cfg, metrics, **kwargs)
            self.signer = signer

    # The cluster stages first: their consumer groups are registered before ingest starts
    # and join in the background (nothing in their start-up waits for a rebalance).
    app.service(_Keys)
    app.service(_Campaigns)
    app.service(_Ingest)

    @app.agent(findings, concurrency=1)
    async def alert_agent(stream: faust.Stream[bytes]) -> None:
        # events(): the raw key, value and headers the signature covers.
        async for event in stream.events():
            m = event.message
            value = m.value
            if not isinstance(value, bytes) or not signer.verify(
                t.findings, m.key, value, m.headers
            ):
                await reject_finding(m, value if isinstance(value, bytes) else b"")
                continue
            try:
                msg = orjson.loads(value)
                changes = alert_stage.handle(msg)
            except Exception as err:
                # Signed, so ours: a bug, not an attack. It must still not stop the agent
                # (the supervisor would restart it past the record and lose it silently).
                await reject_finding(m, value, "invalid_finding", f"{type(err).__name__}: {err}")
                continue
            worst.update(msg, changes)
            for change in changes:
                key = change["alert_id"].encode()
                data = orjson.dumps(change)
                await alerts.send(key=key, value=data, headers=signer.headers(t.alerts, key, data))
                log_change(change)

    async def reject_finding(
        m: Any, raw: bytes, reason: str = "bad_signature", error: str | None = None
    ) -> None:
        """A finding we did not write (or cannot fold): never turned into an alert, counted,
        dead-lettered."""
        record_metrics.rejected.labels("findings", reason).inc()
        if error is None:
            error = signer.reason(m.headers).replace("_", " ")
        log.warning(
            "findings record at partition %s offset %s (key %s) not acted on (%s: %s), "
            "sent to alerts-dlq",
            m.partition, m.offset, safe(m.key, 80), reason, safe(error),
        )
        where = {"source_topic": t.findings, "partition": m.partition, "offset": m.offset}
        await dispatcher.dlq(rejected_record(reason, error, where, raw))

    dispatcher = install_delivery(app, cfg, registry, signer=signer,
                                  record_metrics=record_metrics)
    app.distillwatch_registry = registry  # type: ignore[attr-defined]
    app.distillwatch_metrics = metrics  # type: ignore[attr-defined]
    return app
