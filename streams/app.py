"""The Faust application: the ingest service, the alert agent and timers. Thin glue around
:mod:`streams.stages`; ingest bypasses Faust streams for speed (see :mod:`streams.ingest`).

Agents run at concurrency 1: with more, faust-streaming can commit offsets past messages
that are still being processed (faust-streaming issue #606), which breaks at-least-once.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
import orjson
from prometheus_client import CollectorRegistry

from streams.config import Config
from streams.delivery import install_delivery
from streams.faust_metrics import install as install_faust_metrics
from streams.ingest import IngestService
from streams.metrics import Metrics
from streams.stages import AlertStage, IngestStage
from streams.topk import TopKCollector, WorstEntities

__all__ = ["build_app"]

log = logging.getLogger(__name__)


def build_app(cfg: Config, registry: CollectorRegistry | None = None) -> faust.App:
    """Build the worker's Faust app for ``cfg``; metrics go to ``registry``."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics.create(registry)
    app = faust.App(
        cfg.worker.app_id,
        broker=cfg.broker.url,
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
    alerts = app.topic(t.alerts, value_type=bytes)

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

    app.service(_Ingest)

    @app.agent(findings, concurrency=1)
    async def alert_agent(stream: faust.Stream[bytes]) -> None:
        async for value in stream:
            msg = orjson.loads(value)
            changes = alert_stage.handle(msg)
            worst.update(msg, changes)
            for change in changes:
                await alerts.send(key=change["alert_id"].encode(), value=orjson.dumps(change))
                log.info(
                    "alert %s %s %s/%s severity=%s score=%s",
                    change["alert_id"],
                    change["state"],
                    change["entity_type"],
                    change["entity_id"],
                    change["severity"],
                    change["score"],
                )

    @app.timer(interval=5.0)
    async def report_lag() -> None:
        for svc in app._extra_service_instances or []:
            if isinstance(svc, IngestService):
                for p, high in svc.highwaters.items():
                    done = svc.last_offsets.get(p, -1) + 1
                    metrics.consumer_lag.labels(str(p)).set(max(0, high - done))

    install_delivery(app, cfg, registry)
    app.distillwatch_registry = registry  # type: ignore[attr-defined]
    app.distillwatch_metrics = metrics  # type: ignore[attr-defined]
    return app
