"""The cluster stages on Kafka: per-key totals and campaign assembly, each a batched aiokafka
consumer in its own consumer group (as :mod:`streams.ingest`; Kafka assigns the partitions,
nothing here coordinates workers).

::

    ingest (account stage, any worker)
      │ key batches + watermarks, partition = crc32(key) % N
      ▼
    <app_id>-cluster-keys (N partitions) ── KeyStageService (group <app_id>-cluster-keys)
      │ window totals + suspects' summaries + watermarks
      ▼
    <app_id>-cluster-windows (1 partition) ── CampaignStageService (group <app_id>-campaigns)
      │ campaign findings + campaign watermark (signed)        state: <app_id>-campaign-state
      ▼
    findings ── alert agent

Both stages are event-time: a window moves on only when every upstream partition's
watermark record has passed it. Every record is validated (:func:`detectors.summary.decode`):
one that does not decode goes to ``requests-dlq`` with its reason and source
topic/partition/offset, is counted (``distillwatch_cluster_records_rejected_total``) and the
stage goes on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from mode import Service

from detectors.assembly import CampaignAssembly
from detectors.events import InvalidEvent
from detectors.keycount import KeyCounter
from detectors.summary import SummaryFormatError, decode, encode, encode_chunks
from streams.campaign_state import CampaignStateStore
from streams.cluster_topics import ensure_cluster_topics, keys_topic, windows_topic
from streams.config import Config
from streams.dlq import dlq_record
from streams.dlq import publish as publish_dlq
from streams.integrity import RecordSigner
from streams.kafka_security import client_kwargs
from streams.metrics import Metrics
from streams.rebalance import restore_before_fetch

__all__ = ["CampaignStageService", "KeyStageService"]

log = logging.getLogger(__name__)

POLL_MS = 200


class _Stage(Service):
    """A consumer group on one topic, a producer, and the reject path shared by both stages."""

    group_suffix = ""

    def __init__(self, cfg: Config, metrics: Metrics, topic: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cfg = cfg
        self.metrics = metrics
        self.topic = topic
        self._kafka = client_kwargs(cfg.broker)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    async def on_start(self) -> None:
        bootstrap = self.cfg.broker.bootstrap
        # Before subscribing: a broker that auto-creates topics would give them its default
        # partition count.
        await asyncio.to_thread(ensure_cluster_topics, bootstrap, self.cfg.worker.app_id,
                                self.cfg.topics.partitions, self._kafka)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, max_request_size=16 * 1024 * 1024,
            **self._kafka,
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=f"{self.cfg.worker.app_id}-{self.group_suffix}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            rebalance_timeout_ms=4_000,
            **self._kafka,
        )
        self._consumer.subscribe([self.topic], listener=_Listener(self))

    async def join(self) -> None:
        """Start the consumer (its first group join) from the stage's task, not from
        ``on_start``: aiokafka's start waits for the join (about the rebalance timeout on
        Tansu), and the worker's start-up, ingest included, must not wait for it."""
        assert self._consumer is not None
        await self._consumer.start()
        log.info("%s stage consumer started on %s", self.group_suffix, self.topic)

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def on_assigned(self, partitions: list[int]) -> None: ...

    async def on_revoked(self, partitions: list[int]) -> None: ...

    async def reject(self, raw: bytes | None, err: SummaryFormatError, partition: int,
                     offset: int) -> None:
        self.metrics.cluster_records_rejected.labels(self.group_suffix, err.reason).inc()
        log.warning("%s record at partition %s offset %s rejected: %s",
                    self.topic, partition, offset, err)
        producer = self._producer
        assert producer is not None
        rec = dlq_record(raw, InvalidEvent(err.reason, str(err)), topic=self.topic,
                         partition=partition, offset=offset,
                         keep_bytes=self.cfg.validation.dlq_payload_bytes)
        await publish_dlq(
            lambda value: producer.send(self.cfg.topics.requests_dlq, value),
            [rec],
            should_stop=lambda: self.should_stop,
            on_failure=self.metrics.dlq_write_failures.inc,
        )

    async def commit(self, offsets: dict[int, int | None]) -> None:
        consumer = self._consumer
        assert consumer is not None
        todo = {TopicPartition(self.topic, p): o for p, o in offsets.items() if o is not None}
        if todo:
            try:
                await consumer.commit(todo)
            except Exception as err:  # a rebalance in flight: the next batch commits again
                log.info("%s offset commit skipped: %s", self.group_suffix, err)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stage: _Stage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.stage.on_revoked([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Any) -> None:
        consumer = self.stage._consumer
        assert consumer is not None
        await restore_before_fetch(consumer, assigned, lambda: self.stage.on_assigned(
            [tp.partition for tp in assigned]))


class KeyStageService(_Stage):
    """Per-key totals (:class:`~detectors.keycount.KeyCounter`) for the key partitions this
    worker is assigned. Its state is rebuilt from its own input: offsets are committed only
    up to the first batch of the current cluster window, so a restart (or the worker that
    takes a partition over) reads that cluster window again and re-sends its window totals,
    which campaign assembly recognises as already seen."""

    group_suffix = "cluster-keys"

    def __init__(self, cfg: Config, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(cfg, metrics, keys_topic(cfg.worker.app_id), **kwargs)
        self.counters: dict[int, KeyCounter] = {}
        self.parts = cfg.topics.partitions

    def _counter(self, q: int) -> KeyCounter:
        c = self.counters.get(q)
        if c is None:
            d = self.cfg.detection
            c = self.counters[q] = KeyCounter(self.cfg.windows.size_s, d.cluster_windows)
        return c

    async def on_assigned(self, partitions: list[int]) -> None:
        assert self._producer is not None
        self.parts = len(await self._producer.partitions_for(self.topic))
        for q in partitions:
            self._counter(q)

    async def on_revoked(self, partitions: list[int]) -> None:
        for q in partitions:
            self.counters.pop(q, None)

    @Service.task
    async def _consume(self) -> None:
        consumer, producer = self._consumer, self._producer
        assert consumer is not None and producer is not None
        out_topic = windows_topic(self.cfg.worker.app_id)
        await self.join()
        while not self.should_stop:
            fetched = await consumer.getmany(timeout_ms=POLL_MS, max_records=10_000)
            futs = []
            for tp, recs in fetched.items():
                q = tp.partition
                counter = self._counter(q)
                for r in recs:
                    try:
                        rec = decode(r.value)
                        if rec["t"] == "wm":
                            counter.watermark(rec["p"], rec["b"], sources=rec["n"],
                                              offset=r.offset)
                        elif rec["t"] == "kb":
                            counter.add(rec, offset=r.offset)
                        else:
                            raise SummaryFormatError("bad_type", "t must be kb or wm here")
                    except SummaryFormatError as err:
                        await self.reject(r.value, err, q, r.offset)
                    except Exception as err:  # a bug must not stop the stage either
                        await self.reject(r.value, SummaryFormatError(
                            "internal_error", f"{type(err).__name__}: {err}"[:200]), q, r.offset)
            for q, counter in self.counters.items():
                before = counter.boundary
                for rec in counter.close(part=q):
                    # Suspects' summaries grow with the window's accounts: in chunks.
                    for raw in encode_chunks(rec):
                        futs.append(await producer.send(out_topic, raw, partition=0))
                if counter.boundary > before:
                    wm = {"t": "wm", "p": q, "n": self.parts, "b": counter.boundary}
                    futs.append(await producer.send(out_topic, encode(wm), partition=0))
            if futs:
                await asyncio.gather(*futs)
            if fetched or futs:
                await self.commit({q: c.committable() for q, c in self.counters.items()})


class CampaignStageService(_Stage):
    """Campaign assembly (:class:`~detectors.assembly.CampaignAssembly`) on the one-partition
    windows topic: the worker that holds it sees every flagged key. Findings go to
    ``findings`` signed, followed by a campaign watermark; then the assembly's state is
    saved to a compacted topic with the windows-topic offset it reflects, and restored from
    there when the partition is assigned (:mod:`streams.campaign_state`)."""

    group_suffix = "campaigns"

    #: Signs findings (the alert agent rejects unsigned ones); the app sets it.
    signer: RecordSigner | None = None

    def __init__(self, cfg: Config, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(cfg, metrics, windows_topic(cfg.worker.app_id), **kwargs)
        self.assembly: CampaignAssembly | None = None
        self.store = CampaignStateStore(cfg, metrics, client_kwargs=self._kafka)
        self._next_offset: int | None = None

    def _new_assembly(self) -> CampaignAssembly:
        kw = {k: v for k, v in self.cfg.detection_kwargs().items()
              if k in _ASSEMBLY_KEYS}
        return CampaignAssembly(**kw)

    async def on_assigned(self, partitions: list[int]) -> None:
        if 0 not in partitions:
            return
        consumer = self._consumer
        assert consumer is not None
        asm, offset = await self.store.restore(self._new_assembly)
        self.assembly = asm
        self._next_offset = offset
        tp = TopicPartition(self.topic, 0)
        if offset is not None:
            consumer.seek(tp, offset)
        else:
            # No snapshot (or one that did not decode): the assembly is empty, so whatever
            # offset the group committed is meaningless to it; rebuild from the whole topic.
            await consumer.seek_to_beginning(tp)
        log.info("campaign assembly restored: %s campaigns, resuming at offset %s",
                 len(asm.clusters.campaigns), offset)

    async def on_revoked(self, partitions: list[int]) -> None:
        if 0 in partitions:
            self.assembly = None

    @Service.task
    async def _consume(self) -> None:
        consumer, producer = self._consumer, self._producer
        assert consumer is not None and producer is not None
        findings_topic = self.cfg.topics.findings
        await self.join()
        while not self.should_stop:
            fetched = await consumer.getmany(timeout_ms=POLL_MS, max_records=10_000)
            asm = self.assembly
            if asm is None:
                continue
            for tp, recs in fetched.items():
                for r in recs:
                    self._next_offset = r.offset + 1
                    try:
                        rec = decode(r.value)
                        if rec["t"] == "wm":
                            asm.watermark(rec["p"], rec["b"], parts=rec["n"])
                        elif rec["t"] == "wt":
                            asm.add(rec, offset=r.offset)
                        else:
                            raise SummaryFormatError("bad_type", "t must be wt or wm here")
                    except SummaryFormatError as err:
                        await self.reject(r.value, err, tp.partition, r.offset)
                    except Exception as err:  # a bug must not stop the stage either
                        await self.reject(r.value, SummaryFormatError(
                            "internal_error", f"{type(err).__name__}: {err}"[:200]),
                            tp.partition, r.offset)
            before = asm.boundary
            findings = asm.close()
            if asm.boundary <= before:
                continue
            self.metrics.campaign_watermark.set(asm.boundary)
            msgs: list[dict[str, Any]] = [{"type": "finding", **f.to_dict()} for f in findings]
            msgs.append({"type": "watermark", "ts": asm.boundary, "stage": "campaign"})
            futs = []
            for msg in msgs:
                key = str(msg.get("entity_id", "_campaign_watermark")).encode()
                value = encode(msg)
                headers = self.signer.headers(findings_topic, key, value) if self.signer else None
                futs.append(await producer.send(findings_topic, value, key=key, headers=headers))
            for f in findings:
                self.metrics.findings.labels(f.detector, f.severity).inc()
            await asyncio.gather(*futs)
            # Findings first, state second: a crash in between assembles these windows
            # again and the alert book ignores findings of windows it has processed.
            offset = asm.committable(self._next_offset)
            await self.store.save(producer, asm, offset)
            await self.commit({0: offset})


_ASSEMBLY_KEYS = frozenset({
    "window_s", "suspicious", "cluster_windows", "cluster_min_members", "cluster_min_share",
    "cluster_min_z", "cluster_critical_members", "cluster_critical_young_share",
    "cluster_hold_windows", "cluster_critical_harvest_tokens", "cluster_fold_share",
    "template_min_accounts",
    "template_max_bits", "max_members",
})
