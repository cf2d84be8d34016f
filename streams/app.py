"""The Faust application: topics, agents and timers. Thin glue around :mod:`streams.stages`.

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
from streams.metrics import Metrics
from streams.stages import AlertStage, IngestStage

__all__ = ["build_app"]

log = logging.getLogger(__name__)

INGEST_BATCH = 2000
INGEST_WITHIN_S = 0.2


def build_app(cfg: Config, registry: CollectorRegistry | None = None) -> faust.App:
    """Build the worker's Faust app for ``cfg``; metrics go to ``registry``."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics.create(registry)
    app = faust.App(
        cfg.worker.app_id,
        broker=cfg.broker.url,
        datadir=cfg.worker.data_dir,
        store="memory://",
        processing_guarantee="at_least_once",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=cfg.topics.partitions,
        consumer_auto_offset_reset="earliest",
        # Tansu answers a group join after about the rebalance timeout: keep it short.
        broker_rebalance_timeout=4,
        web_enabled=False,
    )
    t = cfg.topics
    requests = app.topic(t.requests, value_type=bytes)
    dlq = app.topic(t.requests_dlq, value_type=bytes)
    findings = app.topic(t.findings, value_type=bytes, partitions=1)
    alerts = app.topic(t.alerts, value_type=bytes)

    ingest = IngestStage(cfg, metrics)
    alert_stage = AlertStage(cfg, metrics)
    last_offset: dict[int, int] = {}

    async def _emit(result_findings: list[dict[str, Any]]) -> None:
        for msg in result_findings:
            key = msg.get("entity_id", "_watermark")
            await findings.send(key=str(key).encode(), value=orjson.dumps(msg))

    @app.agent(requests, concurrency=1)
    async def account_agent(stream: faust.Stream[bytes]) -> None:
        async for events in stream.take_events(INGEST_BATCH, within=INGEST_WITHIN_S):
            batch = []
            for e in events:
                msg = e.message
                batch.append((e.value, msg.partition, msg.offset))
                last_offset[msg.partition] = msg.offset
            res = ingest.handle(batch)
            for rec in res.dlq:
                await dlq.send(value=orjson.dumps(rec))
                log.warning(
                    "rejected event partition=%s offset=%s reason=%s: %s",
                    rec["partition"],
                    rec["offset"],
                    rec["reason"],
                    rec["message"],
                )
            await _emit(res.findings)

    @app.agent(findings, concurrency=1)
    async def alert_agent(stream: faust.Stream[bytes]) -> None:
        async for value in stream:
            for change in alert_stage.handle(orjson.loads(value)):
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

    @app.timer(interval=cfg.windows.timer_s)
    async def close_quiet_windows() -> None:
        await _emit(ingest.tick())

    @app.timer(interval=5.0)
    async def report_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic != t.requests:
                continue
            try:
                high = consumer.highwater(tp)
            except Exception:  # highwater is unknown until the first fetch
                continue
            if high is None:
                continue
            done = last_offset.get(tp.partition, -1) + 1
            metrics.consumer_lag.labels(str(tp.partition)).set(max(0, high - done))

    app.distillwatch_registry = registry  # type: ignore[attr-defined]
    app.distillwatch_metrics = metrics  # type: ignore[attr-defined]
    return app
