"""The suspension hook's durable memory: action budget and idempotency, kept in Kafka.

Without it the circuit breaker's budget and the decided idempotency keys lived in one
process: a restart reset the budget and decided redelivered alerts again, and W workers had
W budgets (issue 11, item 5). Now every decision the :class:`~streams.sinks.policy.PolicyEngine`
takes is first appended to a one-partition, compacted topic ``<app_id>-suspension-ledger``;
before deciding, the hook reads that topic up to its end, so the engine starts from what
every worker (and every earlier life of this one) decided.

Records (key -> JSON value), all signed with the worker's record secret
(:mod:`streams.integrity`); a record that fails verification or does not decode is skipped
and counted, never applied:

- ``k:<alert_id>:<account_id>:<action>`` -> ``{"ts", "account", "action", "budget"}``: a
  decision was taken (``budget``: it spent the action budget at ``ts``);
- ``f:<idempotency key>`` -> ``{"ts"}``: its execution failed for good, a later update of
  the alert may try again (the budget it spent stays spent);
- ``b:open`` -> ``{"until"}``: the breaker is open until then;
- ``d:<delivery id>`` -> ``{"ts"}``: this alert change was decided; a redelivered copy is
  dropped without a second audit record.

The topic is compacted: only the newest record per key is kept, which is all the replay
needs (keys are unique per decision, and ``b:open`` is the latest state).
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

__all__ = ["KafkaLedger", "LedgerRecord", "ledger_topic"]

log = logging.getLogger(__name__)

#: (key, value); a None value is a tombstone.
LedgerRecord = tuple[str, dict[str, Any] | None]


def ledger_topic(app_id: str) -> str:
    """One ledger per consumer group, like the state changelog."""
    return f"{app_id}-suspension-ledger"


class KafkaLedger:
    """Append to and read the ledger topic (one partition, so one total order).

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers.
    topic
        The ledger topic (created compacted with one partition if missing).
    signer
        Signs what is written and verifies what is read.
    registry
        Gets ``distillwatch_ledger_records_total{result}`` (applied / rejected).
    client_kwargs
        Connection security (:func:`streams.kafka_security.client_kwargs`).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        signer: RecordSigner,
        registry: CollectorRegistry | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self._kw = dict(client_kwargs or {})
        self.topic = topic
        self.signer = signer
        self._tp = TopicPartition(topic, 0)
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self.rejected = 0
        self.read = 0
        self._records = Counter(
            "distillwatch_ledger_records_total",
            "Suspension-ledger records read, by result (applied, rejected: bad signature "
            "or not decodable)",
            ["result"],
            registry=registry,
        ) if registry is not None else None

    async def start(self) -> None:
        from streams.broker import create_topics

        await asyncio.to_thread(create_topics, self.bootstrap, {self.topic: 1}, compact=True,
                                client_kwargs=self._kw)
        # acks=all: a decision the broker could lose would be decided again after a restart.
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

    async def append(self, records: list[LedgerRecord]) -> None:
        """Write ``records`` in order and wait until the broker has all of them."""
        assert self._producer is not None, "ledger not started"
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

    async def sync(self) -> list[LedgerRecord]:
        """Every record written since the last call (by any worker), up to the end of the
        topic as of this call, in log order."""
        assert self._consumer is not None, "ledger not started"
        async with self._lock:
            c = self._consumer
            end = (await c.end_offsets([self._tp]))[self._tp]
            out: list[LedgerRecord] = []
            while await c.position(self._tp) < end:
                batch = await c.getmany(self._tp, timeout_ms=1000)
                for r in batch.get(self._tp, ()):
                    rec = self._decode(r)
                    if rec is not None:
                        out.append(rec)
            return out

    def _decode(self, r: Any) -> LedgerRecord | None:
        self.read += 1
        value = b"" if r.value is None else r.value
        ok = r.key is not None and self.signer.verify(self.topic, r.key, value, r.headers)
        rec: LedgerRecord | None = None
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
                log.error("suspension ledger: skipped %d record(s) failing verification or "
                          "decoding (offset %s)", self.rejected, r.offset)
        if self._records is not None:
            self._records.labels("rejected" if rec is None else "applied").inc()
        return rec
