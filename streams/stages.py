"""What the agents do, without Kafka: validate and count a batch, close windows, fold findings
into alerts. Agents in :mod:`streams.app` only move bytes between topics and these stages,
so the stages are tested directly and the same code runs in every deployment.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors.alerts import AlertBook
from detectors.assembly import CAMPAIGN_DETECTORS
from detectors.events import InvalidEvent, parse_event
from detectors.findings import Finding
from detectors.pipeline import Detection
from detectors.summary import encode, encode_chunks, route
from streams.config import Config
from streams.dlq import dlq_record
from streams.metrics import Metrics
from streams.watermark import PartitionClocks

__all__ = ["AlertStage", "IngestResult", "IngestStage", "RawMessage"]

# (value, partition, offset); the value is None for a record without one (a tombstone)
RawMessage = tuple[bytes | None, int | None, int | None]


@dataclass(slots=True)
class IngestResult:
    dlq: list[dict[str, Any]] = field(default_factory=list)
    # Messages for the findings topic: findings, then the watermark they were produced at.
    findings: list[dict[str, Any]] = field(default_factory=list)


class IngestStage:
    """Validate raw request payloads, count them into windows and close windows.

    The watermark comes from :class:`~streams.watermark.PartitionClocks`: the smallest
    newest-event-time over the assigned partitions, where only a partition the latest fetch
    proved caught up may move on with the wall clock (see that module for why). The Kafka
    side reports each partition's position and end offset through :meth:`fetched`; both
    :meth:`handle` and :meth:`tick` close whatever the watermark allows, so results do not
    depend on how events are batched or how fast they are processed.
    """

    def __init__(self, cfg: Config, metrics: Metrics, detection: Detection | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        # Cluster detection runs in its own stages (streams/cluster.py): this one publishes
        # the key batches of every closed window (pop_cluster_records): every account-
        # window's key counts, the suspects' summaries.
        self.detection = detection or Detection(**cfg.detection_kwargs(), local_clusters=False)
        #: Partitions of ``requests`` (sources) and of the per-key topic; the service sets
        #: them from the broker's metadata before the first batch.
        self.sources = cfg.topics.partitions
        self.key_parts = cfg.topics.partitions
        self._owned: set[int] = set()
        self._cluster_out: list[tuple[int, bytes]] = []
        self._marked = float("-inf")
        self._max_ts = float("-inf")
        self.clocks = PartitionClocks()
        # Per open window: the first offset of each partition that fed it, so offsets are
        # committed only up to what closed windows have fully accounted for.
        self._open_first: dict[float, dict[int | None, int]] = {}
        self._next_offset: dict[int | None, int] = {}
        # Where each account's events come from: its state is saved to the same partition of
        # the state changelog, and dropped when that partition moves to another worker.
        self.account_partition: dict[str, int | None] = {}

    def handle(self, batch: Iterable[RawMessage], now: float | None = None) -> IngestResult:
        now = time.time() if now is None else now
        v = self.cfg.validation
        res = IngestResult()
        det = self.detection
        size = self.cfg.windows.size_s
        open_first = self._open_first
        account_partition = self.account_partition
        next_offset = self._next_offset
        # Hot loop: everything per event is a local; counters and metrics are per batch.
        add = det.add
        windower = det.windower
        late_before = windower.late_events
        # Newest event time per partition in this batch: the clocks learn it once per batch.
        partition_ts: dict[int | None, float] = {}
        neg_inf = float("-inf")
        max_future_s, max_past_s = v.max_future_s, v.max_past_s
        max_bytes = v.max_payload_bytes
        max_tokens = v.max_tokens
        n = valid = added = 0
        for payload, partition, offset in batch:
            n += 1
            if offset is not None:
                next_offset[partition] = offset + 1
            # Decoding, validation and the window update of one record under one try: any
            # exception is this record's, it goes to the DLQ and the batch goes on (a worker
            # that died here would die again on the same offset after every restart).
            try:
                ev = parse_event(
                    payload,
                    now=now,
                    max_future_s=max_future_s,
                    max_past_s=max_past_s,
                    max_bytes=max_bytes,
                    max_tokens=max_tokens,
                )
                ts = ev.ts
                was_added = add(ev)
            except Exception as exc:
                err = (
                    exc
                    if isinstance(exc, InvalidEvent)
                    else InvalidEvent("internal_error", f"{type(exc).__name__}: {exc}")
                )
                self.metrics.events_invalid.labels(err.reason).inc()
                res.dlq.append(
                    dlq_record(
                        payload,
                        err,
                        topic=self.cfg.topics.requests,
                        partition=partition,
                        offset=offset,
                        keep_bytes=v.dlq_payload_bytes,
                    )
                )
                continue
            valid += 1
            if ts > partition_ts.get(partition, neg_inf):
                partition_ts[partition] = ts
            if was_added:
                added += 1
                if ev.account_id not in account_partition:
                    account_partition[ev.account_id] = partition
                if offset is not None:
                    start = ts - ts % size
                    firsts = open_first.get(start)
                    if firsts is None:
                        open_first[start] = {partition: offset}
                    elif partition not in firsts:
                        firsts[partition] = offset
        # An event the windows refused is late or else a duplicate.
        late = windower.late_events - late_before
        dup = valid - added - late
        self.metrics.events_consumed.inc(n)
        self.metrics.events_valid.inc(valid)
        if late:
            self.metrics.events_late.inc(late)
        if dup:
            self.metrics.events_duplicate.inc(dup)
        for p, ts in partition_ts.items():
            self.clocks.delivered(p, ts, now)
        res.findings = self._close(now)
        return res

    def fetched(
        self, partition: int | None, *, position: int | None, end_offset: int | None, at: float
    ) -> None:
        """What the latest fetch response said about ``partition`` (see
        :meth:`~streams.watermark.PartitionClocks.fetched`)."""
        self.clocks.fetched(partition, position=position, end_offset=end_offset, at=at)

    def assigned(self, partitions: Iterable[int | None]) -> None:
        """New partitions hold the watermark back until their first fetch response."""
        parts = list(partitions)
        self.clocks.assigned(parts)
        self._owned.update(p for p in parts if p is not None)
        # The new partitions have not told the per-key stage anything yet.
        self._marked = float("-inf")

    def _close(self, now: float) -> list[dict[str, Any]]:
        wm = self.clocks.watermark()
        if wm is None or wm <= self._max_ts:
            return []
        self._max_ts = wm
        out = self._advance(wm, now)
        self._publish_summaries()
        return out

    def _publish_summaries(self) -> None:
        """Key batches of the windows just closed, then, when the boundary moved, a
        watermark per owned partition to every key partition (after the batches: the
        per-key stage reads them in that order on each of its partitions)."""
        det = self.detection
        parts, susp = self.key_parts, det.suspicious
        out = self._cluster_out
        account_partition = self.account_partition
        for win in det.pop_summaries():
            # Per source, in the order the window's accounts first name them: summaries of
            # the suspects, key labels of the rest (the same batches as every account-
            # window's summary made).
            by_source = win.by_source(account_partition)
            groups = win.groups
            if groups and not by_source:
                # Every account of the window failed detection: the groups still go on.
                by_source[min(self._owned, default=0)] = ([], [])
            # This worker's swarm groups ride once, with its first source's batch.
            first = min(by_source, default=0)
            start = win.start
            for p, (summaries, plain) in by_source.items():
                for q, rec in route(start, p, summaries, parts=parts, suspicious=susp,
                                    groups=groups if p == first else (),
                                    plain_labels=plain).items():
                    # In chunks of at most CHUNK_BYTES: a batch grows with the window's
                    # accounts, the producer and topic take about 1 MB.
                    out.extend((q, raw) for raw in encode_chunks(rec))
        b = det.windower.closed_before
        if b > self._marked and self._owned:
            self._marked = b
            for p in sorted(self._owned):
                wm = encode({"t": "wm", "p": p, "n": max(self.sources, p + 1), "b": b})
                out.extend((q, wm) for q in range(parts))

    def pop_cluster_records(self) -> list[tuple[int, bytes]]:
        """(key partition, value) records for the per-key topic since the last call."""
        out, self._cluster_out = self._cluster_out, []
        return out

    def release(self, partitions: Iterable[int | None]) -> None:
        """Forget everything about ``partitions`` (revoked in a rebalance): their accounts'
        state and open-window counters, and their watermark and offset bookkeeping."""
        gone = set(partitions)
        ids = [a for a, p in self.account_partition.items() if p in gone]
        for a in ids:
            del self.account_partition[a]
        self.detection.drop_accounts(ids)
        self.clocks.release(gone)
        self._owned -= gone
        for p in gone:
            self._next_offset.pop(p, None)
            for firsts in self._open_first.values():
                firsts.pop(p, None)

    def committable(self, partition: int | None) -> int | None:
        """The offset that is safe to commit on ``partition``: every message before it is
        either in a closed (scored) window, rejected, late or a duplicate."""
        firsts = [f[partition] for f in self._open_first.values() if partition in f]
        if firsts:
            return min(firsts)
        return self._next_offset.get(partition)

    def tick(self, now: float | None = None) -> list[dict[str, Any]]:
        """No new events: close what the watermark allows now that fetch responses may have
        proven partitions quiet."""
        return self._close(time.time() if now is None else now)

    def _advance(self, watermark: float, now: float) -> list[dict[str, Any]]:
        det = self.detection
        closed_before = det.windows_closed
        errors_before = det.detect_errors
        findings = det.advance(watermark)
        closed = det.windows_closed - closed_before
        if det.detect_errors > errors_before:
            self.metrics.detect_errors.inc(det.detect_errors - errors_before)
        m = self.metrics
        m.watermark.set(watermark)
        m.active_accounts.set(det.active_accounts)
        if not closed:
            return []
        done = det.windower.closed_before
        for start in [s for s in self._open_first if s < done]:
            del self._open_first[start]
        m.windows_closed.inc(closed)
        out: list[dict[str, Any]] = []
        for f in findings:
            m.findings.labels(f.detector, f.severity).inc()
            m.finding_latency.observe(max(0.0, now - f.window_end))
            out.append({"type": "finding", **f.to_dict()})
        out.append({"type": "watermark", "ts": watermark})
        return out


class AlertStage:
    """Fold findings-topic messages into alert state changes (the alert agent's work).

    ``store`` (the worker passes a Faust table, RocksDB-backed with a changelog) keeps one
    record per (entity, detector): the open alert and the newest window processed. It is read
    once, at the first message (Faust has recovered the table by then), and written for every
    key a message changed, so a restarted or rebalanced worker neither re-opens an alert nor
    forgets one.
    """

    def __init__(
        self, cfg: Config, metrics: Metrics, store: MutableMapping[bytes, bytes] | None = None
    ) -> None:
        self.metrics = metrics
        self.store = store
        self._loaded = store is None
        self.book = AlertBook(
            window_s=cfg.windows.size_s,
            quiet_windows=cfg.detection.quiet_windows,
            max_members=cfg.detection.max_members,
        )

    def _load(self) -> None:
        assert self.store is not None
        for k, v in list(self.store.items()):
            key = tuple(orjson.loads(k))
            self.book.load_key(key, orjson.loads(v))  # type: ignore[arg-type]
        self._loaded = True

    def _save(self) -> None:
        assert self.store is not None
        for key, rec in self.book.pop_dirty().items():
            k = orjson.dumps(list(key))
            if rec is None:
                self.store.pop(k, None)
            else:
                self.store[k] = orjson.dumps(rec)

    def handle(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        if not self._loaded:
            self._load()
        changes = self._fold(msg)
        if self.store is not None:
            self._save()
        return changes

    def _fold(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        kind = msg.get("type")
        if kind == "watermark":
            # Campaign assembly's watermark moves campaign alerts; the account stage's
            # every other alert.
            among = msg.get("stage") == "campaign"
            changes = self.book.tick(float(msg["ts"]), CAMPAIGN_DETECTORS, among=among)
        elif kind == "finding":
            fields = {k: v for k, v in msg.items() if k != "type"}
            changes = self.book.observe(Finding.from_dict(fields))
        else:
            return []
        for c in changes:
            self.metrics.alerts.labels(c["detector"], c["severity"], c["state"]).inc()
        for sev, count in self.book.open_by_severity().items():
            self.metrics.alerts_open.labels(sev).set(count)
        return changes
