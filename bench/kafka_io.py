"""Kafka plumbing of the benchmarks: bulk load a topic, the bare consume floor, and
watchers that time messages arriving on the output topics.

Loading uses aiokafka's batch API (``create_batch``/``send_batch``, one batch per partition
at a time): a million 500-byte events go in ~10-20 s, where ``send()`` per message takes
several times longer. Keys go through Kafka's default (murmur2) partitioner, as the gateway's
producer would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["Loader", "floor", "load", "watch"]

_BATCH_BYTES = 900_000


class Loader:
    """Append keyed messages into one open batch per partition and send full ones."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: Sequence[int]) -> None:
        self.producer = producer
        self.topic = topic
        self.partitions = list(partitions)
        self._part = DefaultPartitioner()
        self._batches: dict[int, Any] = {}
        self._pending: list[asyncio.Future[Any]] = []
        self.sent = 0

    async def add(self, key: bytes, value: bytes) -> None:
        p = self._part(key, self.partitions, self.partitions)
        b = self._batches.get(p)
        if b is None:
            b = self._batches[p] = self.producer.create_batch()
        if b.append(key=key, value=value, timestamp=None) is None:
            await self._send(p)
            b = self._batches[p] = self.producer.create_batch()
            b.append(key=key, value=value, timestamp=None)
        self.sent += 1

    async def _send(self, p: int) -> None:
        b = self._batches.pop(p)
        self._pending.append(await self.producer.send_batch(b, self.topic, partition=p))
        if len(self._pending) >= 16:
            await asyncio.gather(*self._pending)
            self._pending.clear()

    async def flush(self) -> None:
        for p in list(self._batches):
            await self._send(p)
        await asyncio.gather(*self._pending)
        self._pending.clear()


async def producer_for(bootstrap: str) -> AIOKafkaProducer:
    prod = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_batch_size=_BATCH_BYTES, max_request_size=4 << 20,
        linger_ms=5,
    )
    await prod.start()
    return prod


async def load(bootstrap: str, topic: str, msgs: Iterable[tuple[bytes, bytes]]) -> int:
    """Write ``(key, value)`` pairs to ``topic``; return how many."""
    prod = await producer_for(bootstrap)
    try:
        parts = sorted(await prod.partitions_for(topic))
        loader = Loader(prod, topic, parts)
        for key, value in msgs:
            await loader.add(key, value)
        await loader.flush()
        return loader.sent
    finally:
        await prod.stop()


def _consumer(bootstrap: str, **kwargs: Any) -> AIOKafkaConsumer:
    # Same fetch sizes as streams.ingest, no group (assign): the floor has no join delay.
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
        **kwargs,
    )


async def floor(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    """The bare aiokafka + orjson loop: decode every value and count per account.

    Timed from the first record to the ``n``-th, like the worker.
    """
    cons = _consumer(bootstrap)
    await cons.start()
    try:
        await cons.topics()  # fetches metadata for every topic
        parts = cons.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        cons.assign(tps)
        await cons.seek_to_beginning(*tps)
        counts: dict[str, int] = {}
        seen = 0
        t0 = None
        c0 = 0.0
        loads = orjson.loads
        while seen < n:
            fetched = await cons.getmany(timeout_ms=200, max_records=10_000)
            if t0 is None and fetched:
                t0, c0 = time.perf_counter(), time.process_time()
            for recs in fetched.values():
                for r in recs:
                    a = loads(r.value)["account_id"]
                    counts[a] = counts.get(a, 0) + 1
                seen += len(recs)
        dt = time.perf_counter() - (t0 or time.perf_counter())
        cpu = time.process_time() - c0 if t0 is not None else 0.0
        return {"events": seen, "seconds": dt, "events_per_s": seen / dt if dt else 0.0,
                "cpu_seconds": cpu, "accounts": len(counts)}
    finally:
        await cons.stop()


async def watch(bootstrap: str, topics: Sequence[str], out: list[tuple[float, str, Any]],
                stop: asyncio.Event) -> None:
    """Append ``(arrival wall time, topic, decoded value)`` for every new message.

    The fetch wait is 10 ms, not aiokafka's 500: the broker parks an idle fetch that long,
    and the watcher's own wait would be counted in every latency it measures (up to 0.5 s
    added to each arrival before this was set)."""
    cons = _consumer(bootstrap, fetch_max_wait_ms=10)
    await cons.start()
    try:
        await cons.topics()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(cons.partitions_for_topic(t)
                                                                     or {0})]
        cons.assign(tps)
        await cons.seek_to_end(*tps)
        while not stop.is_set():
            fetched = await cons.getmany(timeout_ms=100)
            now = time.time()
            for tp, recs in fetched.items():
                out.extend((now, tp.topic, orjson.loads(r.value)) for r in recs)
    finally:
        await cons.stop()
