"""A one-partition, compacted topic of signed JSON records, read to its end on demand.

Shared by the suspension ledger (:mod:`streams.sinks.ledger`) and the pending approvals
(:mod:`streams.sinks.approvals_kafka`): both need one total order that every worker, the CLI
and the console see alike, survive any process, and must not act on a record someone forged
by producing to the topic. Every record is signed with the worker's record secret
(:mod:`streams.integrity`, the MAC covers topic, key and value); one that fails verification
or does not decode is skipped and counted, never returned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from streams.integrity import RecordSigner

__all__ = ["SignedRecord", "SignedTopic"]

log = logging.getLogger(__name__)

#: (key, value); a None value is a tombstone.
SignedRecord = tuple[str, dict[str, Any] | None]


class SignedTopic:
    """Append to and read a signed, compacted, one-partition topic.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers.
    topic
        The topic (created compacted with one partition if missing).
    signer
        Signs what is written and verifies what is read.
    registry
        Gets the counter ``metric{result}`` (applied / rejected).
    client_kwargs
        Connection security (:func:`streams.kafka_security.client_kwargs`).
    metric, what
        Counter name and the words used for this topic in its help text and log lines.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        signer: RecordSigner,
        registry: CollectorRegistry | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        *,
        metric: str = "distillwatch_signed_topic_records_total",
        what: str = "signed topic",
    ) -> None:
        self.bootstrap = bootstrap
        self._kw = dict(client_kwargs or {})
        self.topic = topic
        self.signer = signer
        self.what = what
        self._tp = TopicPartition(topic, 0)
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self.rejected = 0
        self.read = 0
        self._records = Counter(
            metric,
            f"{what.capitalize()} records read, by result (applied, rejected: bad signature "
            "or not decodable)",
            ["result"],
            registry=registry,
        ) if registry is not None else None

    async def start(self) -> None:
        from streams.broker import create_topics

        await asyncio.to_thread(create_topics, self.bootstrap, {self.topic: 1}, compact=True,
                                client_kwargs=self._kw)
        # acks=all: a record the broker could lose would be decided again after a restart.
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                          linger_ms=2, **self._kw)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                          enable_auto_commit=False, **self._kw)
        await self._consumer.start()
        self._consumer.assign([self._tp])
        await self._consumer.seek_to_beginning(self._tp)

    async def stop(self) -> None:
        for client in (self._producer, self._consumer):
            if client is not None:
                await client.stop()
        self._producer = self._consumer = None

    async def append(self, records: list[SignedRecord]) -> None:
        """Write ``records`` in order and wait until the broker has all of them."""
        assert self._producer is not None, f"{self.what} not started"
        futs = []
        for key, value in records:
            k = key.encode()
            v = b"" if value is None else orjson.dumps(value)
            headers = self.signer.headers(self.topic, k, v)
            futs.append(await self._producer.send(
                self.topic, key=k, value=None if value is None else v, partition=0,
                headers=headers,
            ))
        await asyncio.gather(*futs)

    async def sync(self) -> list[SignedRecord]:
        """Every record written since the last call (by any process), up to the end of the
        topic as of this call, in log order."""
        assert self._consumer is not None, f"{self.what} not started"
        async with self._lock:
            c = self._consumer
            end = (await c.end_offsets([self._tp]))[self._tp]
            out: list[SignedRecord] = []
            while await c.position(self._tp) < end:
                batch = await c.getmany(self._tp, timeout_ms=1000)
                for r in batch.get(self._tp, ()):
                    rec = self._decode(r)
                    if rec is not None:
                        out.append(rec)
            return out

    def _decode(self, r: Any) -> SignedRecord | None:
        self.read += 1
        value = b"" if r.value is None else r.value
        ok = r.key is not None and self.signer.verify(self.topic, r.key, value, r.headers)
        rec: SignedRecord | None = None
        if ok:
            try:
                key = r.key.decode("utf-8")
                data = None if r.value is None else orjson.loads(r.value)
                if data is None or isinstance(data, dict):
                    rec = (key, data)
            except (UnicodeDecodeError, orjson.JSONDecodeError):
                rec = None
        if rec is None:
            self.rejected += 1
            if self.rejected == 1 or self.rejected % 1000 == 0:
                log.error("%s %s: skipped %d record(s) failing verification or decoding "
                          "(offset %s)", self.what, self.topic, self.rejected, r.offset)
        if self._records is not None:
            self._records.labels("rejected" if rec is None else "applied").inc()
        return rec
