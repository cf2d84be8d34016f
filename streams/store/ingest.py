"""The store's consumer: ``alerts`` and ``actions`` from Kafka into the database.

Consumer group ``store.group_id`` (default ``<worker.app_id>-store``), from the earliest
offset, offsets committed only after the batch is in the database: a crash re-reads at
most one batch, which the unique keys in :mod:`streams.store.writer` turn into no-ops.

Every record must carry a valid ``dw-sig`` (:mod:`streams.integrity`): anyone who can
produce to ``alerts`` could otherwise plant an alert in the console or a fake approval in
the audit trail. Records that fail are skipped, counted in :attr:`StoreIngest.rejected`
and logged (the first of each topic, then every 100th).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import orjson

from streams.config import Config
from streams.integrity import RecordSigner
from streams.kafka_security import client_kwargs
from streams.logsafe import safe
from streams.store.writer import StoreWriter

__all__ = ["StoreIngest"]

log = logging.getLogger(__name__)


class StoreIngest:
    """Consumes ``alerts`` and ``actions`` into ``writer`` until :meth:`stop` is called."""

    def __init__(self, cfg: Config, writer: StoreWriter, signer: RecordSigner) -> None:
        self.cfg = cfg
        self.writer = writer
        self.signer = signer
        self.group_id = cfg.store.group_id or f"{cfg.worker.app_id}-store"
        self.stored: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def handle(self, topic: str, key: bytes | None, value: bytes | None, headers: Any) -> None:
        """Verify, decode and store one record (never raises on bad input)."""
        t = self.cfg.topics
        if value is None or not self.signer.verify(topic, key, value, headers):
            self.rejected[topic] += 1
            n = self.rejected[topic]
            if n == 1 or n % 100 == 0:
                log.warning("store: %s unsigned or forged record(s) on %s skipped (key %s)",
                            n, topic, safe(key.decode("utf-8", "replace") if key else None))
            return
        try:
            rec = orjson.loads(value)
        except orjson.JSONDecodeError:
            self.rejected[topic] += 1
            return
        if not isinstance(rec, dict):
            self.rejected[topic] += 1
            return
        w = self.writer
        ok = w.add_alert(rec) if topic == t.alerts else w.add_action(value, rec)
        (self.stored if ok else self.duplicates)[topic] += 1

    def run(self, *, idle_exit_s: float | None = None) -> None:
        """Consume until :meth:`stop` (or ``idle_exit_s`` seconds without a record, for
        one-shot catch-up runs).

        When the database is unreachable (connection refused, lost, failed over) the batch
        is not committed: the consumer is closed, and after a pause a new one resumes from
        the last committed offsets, so nothing is skipped and nothing is stored twice."""
        from sqlalchemy.exc import InterfaceError, OperationalError

        pause = 1.0
        while not self._stop.is_set():
            try:
                self._consume(idle_exit_s)
                return
            except (OperationalError, InterfaceError) as err:
                log.error("store: database unavailable (%s); retrying in %.0f s",
                          type(err.orig).__name__ if err.orig is not None else err, pause)
                if self._stop.wait(pause):
                    return
                pause = min(pause * 2, 30.0)

    def _consume(self, idle_exit_s: float | None) -> None:
        import time

        from kafka import KafkaConsumer

        t = self.cfg.topics
        consumer = KafkaConsumer(
            bootstrap_servers=self.cfg.broker.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A short session: a broker may wait up to about half of it before it completes
            # a group join (Tansu does), and a store batch is quick to process.
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            **client_kwargs(self.cfg.broker),
        )
        consumer.subscribe([t.alerts, t.actions])
        log.info("store: consuming %s and %s as group %s", t.alerts, t.actions, self.group_id)
        last = time.monotonic()
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=500, max_records=500)
                for tp, recs in batches.items():
                    for r in recs:
                        self.handle(tp.topic, r.key, r.value, r.headers)
                if batches or not consumer.assignment():
                    # Idle time counts from the group join: joining can take seconds.
                    if batches:
                        consumer.commit()
                    last = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - last > idle_exit_s:
                    break
        finally:
            consumer.close(autocommit=False)
