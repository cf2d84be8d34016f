"""Console actions on Kafka: signed audit records on ``actions``, verdicts on ``labels``.

Every console action (approve, deny, acknowledge, assign, false positive) becomes one
``actions`` record with ``decision = "console"``, the ``action``, ``by`` (the logged-in
user), ``role``, ``note`` and the alert's ids; a false positive also goes to ``labels``
(``label = "false_positive"``) for ``evaluate``. Both are signed like every internal record
(:mod:`streams.integrity`). The record is also written straight into the store, so the
page shows it at once; the store consumer later reads the same bytes back and its unique
digest makes that a no-op.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from streams.config import Config
from streams.integrity import RecordSigner
from streams.kafka_security import client_kwargs
from streams.store.writer import StoreWriter, encode

__all__ = ["AuditPublisher", "console_record"]

log = logging.getLogger(__name__)


def console_record(alert: Mapping[str, Any], action: str, *, by: str, role: str,
                   note: str = "", **extra: Any) -> dict[str, Any]:
    """The audit record of one console action on ``alert``."""
    return {
        "ts": time.time(),
        "decision": "console",
        "action": action,
        "by": by,
        "role": role,
        "note": note or None,
        "alert_id": alert["alert_id"],
        "entity_type": alert.get("entity_type"),
        "entity_id": alert.get("entity_id"),
        "detector": alert.get("detector"),
        "source": "console",
        **extra,
    }


class AuditPublisher:
    """Sends signed records with one aiokafka producer (started with the web app)."""

    def __init__(self, cfg: Config, signer: RecordSigner, writer: StoreWriter | None) -> None:
        self.cfg = cfg
        self.signer = signer
        self.writer = writer
        self._producer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.cfg.broker.bootstrap, acks="all",
            request_timeout_ms=15000, **client_kwargs(self.cfg.broker))
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        await self._producer.send_and_wait(
            topic, value=value, key=key, headers=self.signer.headers(topic, key, value))

    async def audit(self, rec: dict[str, Any]) -> None:
        """Write ``rec`` to ``actions`` (waiting for the broker) and into the store.

        Raises when Kafka does not take it: the caller tells the user, nothing is hidden."""
        value = encode(rec)
        key = str(rec["alert_id"]).encode()
        await self._send(self.cfg.topics.actions, key, value)
        if self.writer is not None:
            self.writer.add_action(value, rec)
        log.info("console: %s %s by %s", rec["action"], rec["alert_id"], rec["by"])

    async def label(self, alert: Mapping[str, Any], *, by: str, note: str) -> None:
        """A false-positive verdict on ``labels`` (key = alert id)."""
        rec = {
            "label": "false_positive", "alert_id": alert["alert_id"],
            "entity_type": alert.get("entity_type"), "entity_id": alert.get("entity_id"),
            "detector": alert.get("detector"), "opened_ts": alert.get("opened_ts"),
            "by": by, "note": note or None, "ts": time.time(),
        }
        await self._send(self.cfg.topics.labels, str(alert["alert_id"]).encode(), encode(rec))
