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
from detectors.events import InvalidEvent, parse_event
from detectors.findings import Finding
from detectors.pipeline import Detection
from streams.config import Config
from streams.dlq import dlq_record
from streams.metrics import Metrics

__all__ = ["AlertStage", "IngestResult", "IngestStage", "RawMessage"]

# (value, partition, offset)
RawMessage = tuple[bytes, int | None, int | None]


@dataclass(slots=True)
class IngestResult:
    dlq: list[dict[str, Any]] = field(default_factory=list)
    # Messages for the findings topic: findings, then the watermark they were produced at.
    findings: list[dict[str, Any]] = field(default_factory=list)


class IngestStage:
    """Validate raw request payloads, count them into windows and close windows.

    Partitions are consumed unevenly (a batch usually comes from one partition), so the
    watermark is the *smallest* of the per-partition newest event times, over partitions that
    delivered events in the last ``idle_partition_s`` seconds of wall time; an idle partition
    does not hold the others back. When the whole stream goes quiet, :meth:`tick` lets the
    watermark follow the wall clock from the last event, so windows still close. For the first
    ``idle_partition_s`` after start-up no window closes, so every partition with a backlog gets
    to deliver before the others can make its events late.
    """

    def __init__(self, cfg: Config, metrics: Metrics, detection: Detection | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.detection = detection or Detection(**cfg.detection_kwargs())
        self._max_ts = float("-inf")
        self._wall_at_last_event = time.time()
        self._idle_s = cfg.windows.idle_partition_s
        self._first_wall: float | None = None
        self._partition_ts: dict[int | None, float] = {}
        self._partition_wall: dict[int | None, float] = {}
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
        partition_ts = self._partition_ts
        partition_wall = self._partition_wall
        neg_inf = float("-inf")
        max_future_s, max_past_s = v.max_future_s, v.max_past_s
        max_bytes = v.max_payload_bytes
        n = valid = added = 0
        for payload, partition, offset in batch:
            n += 1
            if offset is not None:
                next_offset[partition] = offset + 1
            try:
                ev = parse_event(
                    payload,
                    now=now,
                    max_future_s=max_future_s,
                    max_past_s=max_past_s,
                    max_bytes=max_bytes,
                )
            except InvalidEvent as err:
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
            ts = ev.ts
            if ts > partition_ts.get(partition, neg_inf):
                partition_ts[partition] = ts
            partition_wall[partition] = now
            if add(ev):
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
        if valid:
            self._wall_at_last_event = now
        if not valid:
            return res
        if self._first_wall is None:
            self._first_wall = now
        if now - self._first_wall < self._idle_s:
            return res
        active = [
            ts
            for p, ts in self._partition_ts.items()
            if now - self._partition_wall[p] <= self._idle_s
        ]
        wm = min(active)
        if wm > self._max_ts:
            self._max_ts = wm
            res.findings = self._advance(wm, now)
        return res

    def release(self, partitions: Iterable[int | None]) -> None:
        """Forget everything about ``partitions`` (revoked in a rebalance): their accounts'
        state and open-window counters, and their watermark and offset bookkeeping."""
        gone = set(partitions)
        ids = [a for a, p in self.account_partition.items() if p in gone]
        for a in ids:
            del self.account_partition[a]
        self.detection.drop_accounts(ids)
        for p in gone:
            self._partition_ts.pop(p, None)
            self._partition_wall.pop(p, None)
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
        """Wall-clock timer: let the watermark follow the clock while no events arrive."""
        now = time.time() if now is None else now
        if self._first_wall is None or now - self._first_wall < self._idle_s:
            return []
        quiet = now - self._wall_at_last_event
        if quiet < self.cfg.windows.timer_s:
            return []
        if not self._partition_ts:
            return []  # every partition was revoked: nothing to move on
        return self._advance(max(self._partition_ts.values()) + quiet, now)

    def _advance(self, watermark: float, now: float) -> list[dict[str, Any]]:
        det = self.detection
        closed_before = det.windows_closed
        findings = det.advance(watermark)
        closed = det.windows_closed - closed_before
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
            changes = self.book.tick(float(msg["ts"]))
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
