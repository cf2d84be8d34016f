"""Pending approvals in Kafka: a compacted, one-partition topic of signed records.

A file on one worker could not be seen by the console pod, nor by ``distillwatch actions``
on another host, and a worker failover lost it (issue 13 item 4, issue 15 item 3). The
topic ``<worker.app_id>-approvals`` holds three records per alert id (key -> JSON value):

- ``p:<alert_id>``: the request the hook wrote (members, change, links, ``created_ts``);
  rewritten while still pending when the campaign grows;
- ``d:<alert_id>``: the human decision ``{"status": "approved"|"denied", "decided_by",
  "decided_ts", "note", "nonce"}``;
- ``x:<alert_id>``: the worker carried it out ``{"processed_ts", "result"}``.

Three keys, not one: compaction keeps only the newest record of a key, so a request refreshed
by the hook just after a human decided could otherwise replace the decision. Everyone reads
the topic from its start and folds it (:class:`_Fold`): the first decision in log order wins
(a second one, e.g. two people clicking at once, is ignored, and the decider that lost is
told); a decision is acted on once, until its ``x:`` record exists.

Records are signed with the worker's record secret (:mod:`streams.integrity`) by
:class:`~streams.sinks.signed_topic.SignedTopic`; anything unsigned, forged, moved to another
key or not decodable is skipped and counted in ``distillwatch_approval_records_total
{result="rejected"}``, so producing an ``approved`` record to the topic does nothing without
the secret. A replayed genuine ``d:`` record cannot act twice either: the ``x:`` record
stays, and the suspension ledger remembers the approval's delivery id.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from streams.integrity import RecordSigner
from streams.logsafe import safe
from streams.sinks.approvals import ApprovalError
from streams.sinks.signed_topic import SignedRecord, SignedTopic

__all__ = ["KafkaApprovals", "approvals_topic"]

log = logging.getLogger(__name__)

_DECISIONS = ("approved", "denied")


def approvals_topic(app_id: str) -> str:
    """One approvals topic per consumer group, like the suspension ledger."""
    return f"{app_id}-approvals"


class _Fold:
    """The approvals as of the records read so far (pure; no Kafka)."""

    def __init__(self) -> None:
        self.requests: dict[str, dict[str, Any]] = {}
        self.decisions: dict[str, dict[str, Any]] = {}
        self.done: dict[str, dict[str, Any]] = {}
        self.ignored = 0

    def apply(self, key: str, value: dict[str, Any] | None) -> None:
        kind, _, aid = key.partition(":")
        if not aid or value is None:
            return
        if kind == "p":
            old = self.requests.get(aid)
            if old is not None and (aid in self.decisions or aid in self.done):
                return  # a late refresh does not reopen a decided request
            if old is not None:
                value = {**value, "created_ts": old.get("created_ts", value.get("created_ts"))}
            self.requests[aid] = value
        elif kind == "d":
            if value.get("status") not in _DECISIONS or not isinstance(
                    value.get("decided_by"), str):
                self.ignored += 1
                return
            if aid in self.decisions:
                if self.decisions[aid].get("nonce") != value.get("nonce"):
                    self.ignored += 1  # first decision in log order wins
                return
            self.decisions[aid] = value
        elif kind == "x":
            self.done.setdefault(aid, value)

    def record(self, aid: str) -> dict[str, Any] | None:
        """The record as the file store shows it, or None without a request."""
        req = self.requests.get(aid)
        if req is None:
            return None
        d = self.decisions.get(aid) or {}
        x = self.done.get(aid) or {}
        return {
            **req,
            "alert_id": aid,
            "status": d.get("status", "pending"),
            "decided_by": d.get("decided_by"),
            "decided_ts": d.get("decided_ts"),
            "note": d.get("note"),
            "processed_ts": x.get("processed_ts"),
            "result": x.get("result"),
        }

    def records(self) -> list[dict[str, Any]]:
        out = [r for aid in self.requests if (r := self.record(aid)) is not None]
        return sorted(out, key=lambda r: (r.get("created_ts") or 0, r["alert_id"]))


class KafkaApprovals:
    """The :class:`~streams.sinks.approvals.Approvals` interface on the approvals topic.

    Every call first reads what was written since the previous call (by any host), so a
    decision taken in the console is seen by the worker's next poll."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        signer: RecordSigner,
        registry: CollectorRegistry | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.log = SignedTopic(bootstrap, topic, signer, registry, client_kwargs,
                               metric="distillwatch_approval_records_total",
                               what="approvals topic")
        self.where = f"topic {topic}"
        self._fold = _Fold()

    @property
    def rejected(self) -> int:
        """Records skipped: bad or missing signature, or not decodable."""
        return self.log.rejected

    async def start(self) -> None:
        await self.log.start()
        await self._sync()

    async def stop(self) -> None:
        await self.log.stop()

    async def _sync(self) -> None:
        for key, value in await self.log.sync():
            self._fold.apply(key, value)

    async def _append(self, records: list[SignedRecord]) -> None:
        await self.log.append(records)
        for key, value in records:
            self._fold.apply(key, value)

    async def add_pending(self, record: dict[str, Any]) -> bool:
        await self._sync()
        aid = str(record["alert_id"])
        old = self._fold.record(aid)
        if old is not None and old["status"] != "pending":
            return False
        req = {**record, "alert_id": aid,
               "created_ts": (old or record).get("created_ts") or time.time()}
        await self._append([(f"p:{aid}", req)])
        return old is None

    async def list(self, status: str | None = None) -> list[dict[str, Any]]:
        await self._sync()
        return [r for r in self._fold.records() if status is None or r["status"] == status]

    async def get(self, alert_id: str) -> dict[str, Any] | None:
        await self._sync()
        return self._fold.record(alert_id)

    async def decide(self, alert_id: str, *, approve: bool, by: str,
                     note: str = "") -> dict[str, Any]:
        await self._sync()
        rec = self._fold.record(alert_id)
        if rec is None:
            raise ApprovalError(f"no approval with id {alert_id!r}")
        if rec["status"] != "pending":
            raise ApprovalError(
                f"approval {alert_id!r} is already {rec['status']} by {rec['decided_by']}")
        nonce = secrets.token_hex(8)
        await self.log.append([(f"d:{alert_id}", {
            "status": "approved" if approve else "denied", "decided_by": by,
            "decided_ts": time.time(), "note": note or None, "nonce": nonce,
        })])
        # Read back: another host may have decided between our read and our write.
        await self._sync()
        if (self._fold.decisions.get(alert_id) or {}).get("nonce") != nonce:
            rec = self._fold.record(alert_id) or rec
            raise ApprovalError(
                f"approval {alert_id!r} is already {rec['status']} by {rec['decided_by']}")
        out = self._fold.record(alert_id)
        assert out is not None
        return out

    async def take_decided(self) -> list[dict[str, Any]]:
        await self._sync()
        return [r for r in self._fold.records()
                if r["status"] != "pending" and r.get("processed_ts") is None]

    async def mark_processed(self, alert_id: str, result: str) -> None:
        log.info("approval %s processed: %s", safe(alert_id), safe(result))
        await self._append([(f"x:{alert_id}", {"processed_ts": time.time(), "result": result})])

    async def pending_ids(self) -> set[str]:
        return {r["alert_id"] for r in await self.list("pending")}
