"""Campaign assembly's durable state: one snapshot record in a compacted one-partition topic.

After each batch of assembled windows the stage writes ``{"offset", "state"}`` (zlib-compressed
JSON, :mod:`detectors.assembly_state`) under one key, and waits for the broker. ``offset`` is
where the windows topic must be read again from to rebuild what the snapshot does not hold
(windows not yet assembled). When the windows partition is assigned -- at start, after a
crash, on another worker -- the newest snapshot (the topic's last record: one key, so
compaction never removes it) is restored and the consumer seeks to its offset. A snapshot
that does not decode is counted in ``distillwatch_state_records_rejected_total{reason=
"bad_campaign_state"}``, logged, and assembly starts empty: it never runs what it reads.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from detectors.assembly import CampaignAssembly
from detectors.assembly_state import StateFormatError, dump, load
from streams.cluster_topics import campaign_state_topic
from streams.config import Config
from streams.metrics import Metrics

__all__ = ["CampaignStateStore"]

log = logging.getLogger(__name__)

_KEY = b"campaign-assembly"
_MAX_BYTES = 256 * 1024 * 1024


def encode_snapshot(asm: CampaignAssembly, offset: int | None) -> bytes:
    return zlib.compress(orjson.dumps({"offset": offset, "state": dump(asm)}), 3)


def decode_snapshot(
    raw: bytes | None, fresh: Callable[[], CampaignAssembly]
) -> tuple[CampaignAssembly, int | None]:
    """Parse one snapshot record; raise :class:`StateFormatError` if it does not fit."""
    if raw is None:
        raise StateFormatError("campaign state: record without a value")
    try:
        d = zlib.decompressobj()
        data = d.decompress(raw, _MAX_BYTES)
        if d.unconsumed_tail:
            raise StateFormatError("campaign state: over 256 MiB uncompressed")
        rec = orjson.loads(data)
    except (zlib.error, orjson.JSONDecodeError) as err:
        raise StateFormatError(f"campaign state: not a snapshot ({err})") from None
    if not isinstance(rec, dict):
        raise StateFormatError("campaign state: not an object")
    offset = rec.get("offset")
    if offset is not None and not (isinstance(offset, int) and offset >= 0):
        raise StateFormatError("campaign state: offset is not an offset")
    return load(fresh(), rec.get("state")), offset


class CampaignStateStore:
    """Save and restore :class:`~detectors.assembly.CampaignAssembly` snapshots."""

    def __init__(self, cfg: Config, metrics: Metrics | None = None,
                 client_kwargs: dict[str, Any] | None = None) -> None:
        self.bootstrap = cfg.broker.bootstrap
        self.topic = campaign_state_topic(cfg.worker.app_id)
        self._client_kwargs = client_kwargs or {}
        self._metrics = metrics
        self.saved = 0
        self.rejected = 0

    async def save(self, producer: AIOKafkaProducer, asm: CampaignAssembly,
                   offset: int | None) -> None:
        fut = await producer.send(self.topic, encode_snapshot(asm, offset), key=_KEY,
                                  partition=0)
        await fut
        self.saved += 1

    async def restore(
        self, fresh: Callable[[], CampaignAssembly]
    ) -> tuple[CampaignAssembly, int | None]:
        """The newest snapshot and the windows-topic offset to resume at, or a fresh
        assembly and None (no snapshot, or one that does not decode)."""
        raw = await self._last_record()
        if raw is None:
            return fresh(), None
        try:
            return decode_snapshot(raw, fresh)
        except StateFormatError as err:
            self.rejected += 1
            if self._metrics is not None:
                self._metrics.state_records_rejected.labels("bad_campaign_state").inc()
            log.error("campaign state snapshot rejected, assembly starts empty: %s",
                      str(err)[:300])
            return fresh(), None

    async def _last_record(self) -> bytes | None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False,
            max_partition_fetch_bytes=64 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
            **self._client_kwargs,
        )
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            if end <= 0:
                return None
            consumer.seek(tp, end - 1)
            while True:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                for r in batch.get(tp, []):
                    if r.offset >= end - 1:
                        return r.value  # type: ignore[no-any-return]
        finally:
            await consumer.stop()
