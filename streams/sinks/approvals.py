"""Pending approvals of large cluster suspensions: one interface, two backends.

The worker adds a record when a cluster suspension needs a human; ``distillwatch actions
approve|deny`` and the web console set its status; the worker that runs the suspension hook
polls, carries out (or drops) decided records and marks them processed.

- :class:`~streams.sinks.approvals_kafka.KafkaApprovals` (``sinks.approvals_store = "kafka"``,
  the default): a compacted one-partition topic ``<worker.app_id>-approvals`` of signed
  records, so the CLI and the console decide from any host that reaches the broker and a
  worker failover carries the pending requests.
- :class:`FileApprovals` (``"file"``): ``<worker.data_dir>/approvals.json`` on one host, for a
  hook without a broker (tests of the sink, ``--approvals FILE``). Every read-modify-write
  holds an exclusive ``flock`` on ``approvals.json.lock`` and replaces the file atomically,
  so the CLI and the worker never see half a file.

Both are used through :class:`Approvals` (async); :func:`open_approvals` picks one.

Examples
--------
>>> import tempfile, os
>>> store = ApprovalStore(os.path.join(tempfile.mkdtemp(), "approvals.json"))
>>> store.add_pending({"alert_id": "c1", "members": ["a", "b"]})
True
>>> store.add_pending({"alert_id": "c1", "members": ["a", "b", "c"]})  # still pending: refresh
False
>>> [(r["alert_id"], r["status"], len(r["members"])) for r in store.list()]
[('c1', 'pending', 3)]
>>> store.decide("c1", approve=True, by="alice")["status"]
'approved'
>>> [r["alert_id"] for r in store.take_decided()]
['c1']
>>> store.mark_processed("c1", "executed 3"); store.take_decided()
[]
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from streams.sinks.errors import SinkError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from streams.config import Config
    from streams.integrity import RecordSigner

__all__ = ["ApprovalError", "ApprovalStore", "Approvals", "FileApprovals", "approvals_path",
           "open_approvals"]


def approvals_path(data_dir: str | Path) -> Path:
    """Where pending approvals live: ``<worker.data_dir>/approvals.json``."""
    return Path(data_dir) / "approvals.json"

STATUSES = ("pending", "approved", "denied")


class ApprovalError(SinkError, LookupError):
    """No such pending approval, or it was already decided; the message says which."""


class ApprovalStore:
    """Approval records keyed by alert id, in one JSON file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self._read()
                before = json.dumps(data, sort_keys=True)
                yield data
                if json.dumps(data, sort_keys=True) != before:
                    tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": 1, "approvals": {}}
        data.setdefault("approvals", {})
        return data  # type: ignore[no-any-return]

    def add_pending(self, record: dict[str, Any]) -> bool:
        """Add a pending record; True if new. A record still pending is refreshed (members,
        evidence) and False returned; a decided one is left alone."""
        with self._locked() as data:
            recs = data["approvals"]
            old = recs.get(record["alert_id"])
            if old is not None:
                if old["status"] == "pending":
                    old.update({k: v for k, v in record.items() if k not in ("created_ts",)})
                return False
            recs[record["alert_id"]] = {
                **record,
                "status": "pending",
                "created_ts": record.get("created_ts", time.time()),
                "decided_by": None,
                "decided_ts": None,
                "note": None,
                "processed_ts": None,
                "result": None,
            }
            return True

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        """Records, oldest first; only those with ``status`` when given."""
        recs = self._read()["approvals"].values()
        out = [r for r in recs if status is None or r["status"] == status]
        return sorted(out, key=lambda r: (r.get("created_ts") or 0, r["alert_id"]))

    def get(self, alert_id: str) -> dict[str, Any] | None:
        rec = self._read()["approvals"].get(alert_id)
        return dict(rec) if rec is not None else None

    def decide(self, alert_id: str, *, approve: bool, by: str, note: str = "") -> dict[str, Any]:
        """Approve or deny a pending record; raises :class:`ApprovalError` otherwise."""
        with self._locked() as data:
            rec = data["approvals"].get(alert_id)
            if rec is None:
                raise ApprovalError(f"no approval with id {alert_id!r}")
            if rec["status"] != "pending":
                raise ApprovalError(
                    f"approval {alert_id!r} is already {rec['status']} by {rec['decided_by']}"
                )
            rec.update(
                status="approved" if approve else "denied",
                decided_by=by,
                decided_ts=time.time(),
                note=note or None,
            )
            return dict(rec)

    def take_decided(self) -> list[dict[str, Any]]:
        """Decided records the worker has not processed yet."""
        return [
            r for r in self.list() if r["status"] != "pending" and r.get("processed_ts") is None
        ]

    def mark_processed(self, alert_id: str, result: str) -> None:
        with self._locked() as data:
            rec = data["approvals"].get(alert_id)
            if rec is not None:
                rec["processed_ts"] = time.time()
                rec["result"] = result

    def pending_ids(self) -> set[str]:
        return {r["alert_id"] for r in self.list("pending")}


class Approvals(Protocol):
    """What the hook, the CLI and the console need of an approvals backend.

    Records are dicts: the request (``alert_id``, ``members``, ``change``, ...) plus
    ``status`` (pending, approved, denied), ``created_ts``, ``decided_by``, ``decided_ts``,
    ``note``, ``processed_ts`` and ``result``."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def add_pending(self, record: dict[str, Any]) -> bool: ...

    async def list(self, status: str | None = None) -> list[dict[str, Any]]: ...

    async def get(self, alert_id: str) -> dict[str, Any] | None: ...

    async def decide(self, alert_id: str, *, approve: bool, by: str,
                     note: str = "") -> dict[str, Any]: ...

    async def take_decided(self) -> list[dict[str, Any]]: ...

    async def mark_processed(self, alert_id: str, result: str) -> None: ...

    async def pending_ids(self) -> set[str]: ...


class FileApprovals:
    """:class:`ApprovalStore` behind the async :class:`Approvals` interface; the file work
    runs in a thread so a slow disk (or a held lock) does not stall the event loop."""

    def __init__(self, path: str | Path) -> None:
        self.store = ApprovalStore(path)
        self.where = str(self.store.path)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def add_pending(self, record: dict[str, Any]) -> bool:
        return await asyncio.to_thread(self.store.add_pending, record)

    async def list(self, status: str | None = None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.list, status)

    async def get(self, alert_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.store.get, alert_id)

    async def decide(self, alert_id: str, *, approve: bool, by: str,
                     note: str = "") -> dict[str, Any]:
        return await asyncio.to_thread(self.store.decide, alert_id, approve=approve, by=by,
                                       note=note)

    async def take_decided(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.take_decided)

    async def mark_processed(self, alert_id: str, result: str) -> None:
        await asyncio.to_thread(self.store.mark_processed, alert_id, result)

    async def pending_ids(self) -> set[str]:
        return await asyncio.to_thread(self.store.pending_ids)


def open_approvals(
    cfg: Config,
    *,
    file: str | Path | None = None,
    signer: RecordSigner | None = None,
    registry: CollectorRegistry | None = None,
) -> Approvals:
    """The backend ``cfg.sinks.approvals_store`` names; an explicit ``file`` always means the
    file backend (``--file`` / ``--approvals``). Not started: call ``start()``."""
    if file is not None or cfg.sinks.approvals_store == "file":
        return FileApprovals(file or approvals_path(cfg.worker.data_dir))
    from streams.integrity import signer_for
    from streams.kafka_security import client_kwargs
    from streams.sinks.approvals_kafka import KafkaApprovals, approvals_topic

    return KafkaApprovals(cfg.broker.bootstrap, approvals_topic(cfg.worker.app_id),
                          signer or signer_for(cfg), registry, client_kwargs(cfg.broker))
