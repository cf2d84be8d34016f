"""Durable per-account detector state for the ingest service.

State is written once per closed window (never per event) for the accounts that window
touched, to two places:

- a changelog topic ``<app_id>-account-state-changelog``, partitioned like ``requests`` (the
  record for an account goes to the partition its events came from), compacted where the
  broker supports it: the source of truth that any worker can restore from;
- a local RocksDB (rocksdict) under ``worker.data_dir``, with the changelog offset it reflects
  per partition, so a restarted worker reads only the changelog's tail. It is opened in
  rocksdict's *raw* mode: bytes in, bytes out. In its default mode rocksdict tags each value
  with a type byte and *unpickles* a value tagged as an object, so anyone who could write to
  the data folder could run code in the worker at its next restore. A folder written in that
  mode (before 7 Dec 2026) is set aside, never read: it is a cache of the changelog, which
  the worker then reads from the start.

Records are :meth:`detectors.baseline.AccountBaseline.to_bytes` blobs (a version byte and
plain float64s, never pickle): a record that does not decode — a pickle from an older
version, garbage, a forged record, a record without a key — is counted in
``distillwatch_state_records_rejected_total{reason}``, logged once per restore with the count,
and skipped. An account evicted for inactivity (``detection.account_ttl_s``) is deleted from
RocksDB and gets a tombstone (value ``null``) in the changelog, so compaction forgets it too.

Why not a Faust table: a Faust table binds state to Faust's own stream path, whose
per-event cost (~3k events/s here) is what :mod:`streams.ingest` avoids. This module keeps
the same contract — changelog topic, RocksDB, restore on assignment — for the fast path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from itertools import takewhile
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from detectors.baseline import StateFormatError
from detectors.pipeline import Detection
from streams.logsafe import safe
from streams.metrics import Metrics

__all__ = ["REJECT_REASONS", "AccountStateStore", "changelog_topic"]

log = logging.getLogger(__name__)

_OFFSET = b"\x00offset\x00"
#: The row that says the database is raw-mode and ours (see :func:`open_raw`).
_FORMAT = b"\x00format\x00"
_FORMAT_VERSION = b"raw-1"

#: Why a stored record was skipped: its value is not a current-format baseline, or its key
#: is missing or not UTF-8.
REJECT_REASONS = ("bad_format", "bad_key")


def changelog_topic(app_id: str) -> str:
    return f"{app_id}-account-state-changelog"


def _key(partition: int, account_id: str) -> bytes:
    return b"%d\x00%s" % (partition, account_id.encode())


def open_raw(path: Path) -> Rdict:
    """Open (or create) the RocksDB at ``path`` in raw mode, where keys and values are the
    bytes we wrote and nothing is ever unpickled.

    The database is a cache of the changelog, so one that cannot be trusted or read is set
    aside, never repaired or read: a database without this store's format row (one that
    rocksdict's default mode made, with its values tagged and objects pickled, or anything
    else), a corrupt one, or a file where the folder should be is moved to
    ``<path>.untrusted-<ns>`` for an operator to inspect or delete, and a new one is created.
    A database locked by another process is left alone: that is a configuration error
    (two workers sharing ``worker.data_dir``), reported as such."""
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    try:
        db = Rdict(str(path), options=opts)
    except Exception as err:
        if "lock" in str(err).lower():
            raise RuntimeError(
                f"{path} is in use by another process: give each worker its own "
                f"worker.data_dir ({err})"
            ) from err
        return _set_aside(path, opts, f"does not open ({err})")
    if db.get(_FORMAT) == _FORMAT_VERSION:
        return db
    if next(iter(db.keys()), None) is not None:
        db.close()
        return _set_aside(path, opts, "was not written by this version (rocksdict's default "
                                      "mode, whose values can hold pickles, or unknown)")
    db[_FORMAT] = _FORMAT_VERSION
    return db


def _set_aside(path: Path, opts: Options, why: str) -> Rdict:
    aside = path.with_name(f"{path.name}.untrusted-{time.time_ns()}")
    path.rename(aside)
    log.warning("local account state %s %s: moved to %s unread; the state is restored from "
                "the changelog instead", safe(str(path)), safe(why), safe(str(aside)))
    db = Rdict(str(path), options=opts)
    db[_FORMAT] = _FORMAT_VERSION
    return db


class AccountStateStore:
    """Save and restore the per-account state of a :class:`Detection`.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers.
    app_id
        Names the changelog topic (one per consumer group).
    data_dir
        Folder of the local RocksDB.
    metrics
        Where rejected records and evictions are counted (the worker's; optional in tests,
        which read :attr:`rejected` and :attr:`evicted` instead).
    client_kwargs
        Connection security for the restore consumer (:func:`streams.kafka_security.client_kwargs`).
    """

    def __init__(
        self,
        bootstrap: str,
        app_id: str,
        data_dir: str | Path,
        metrics: Metrics | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self._client_kwargs = client_kwargs or {}
        self.topic = changelog_topic(app_id)
        path = Path(data_dir) / "account-state.rdb"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = open_raw(path)
        self.saved = 0
        self.evicted = 0
        self.rejected: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        self._metrics = metrics
        self._evicted_seen = 0
        if metrics is not None:
            for reason in REJECT_REASONS:
                metrics.state_records_rejected.labels(reason)

    def close(self) -> None:
        self._db.close()

    async def save(
        self,
        producer: AIOKafkaProducer,
        detection: Detection,
        account_partition: dict[str, int | None],
    ) -> None:
        """Write the state of every account touched since the last save, and wait until the
        broker has it (the caller commits input offsets only after this returns). An account
        touched but without state was evicted: its row is deleted and a tombstone written."""
        await self.settle(await self.stage(producer, detection, account_partition))

    async def stage(
        self,
        producer: AIOKafkaProducer,
        detection: Detection,
        account_partition: dict[str, int | None],
    ) -> list[tuple[asyncio.Future[Any], int]]:
        """The first half of :meth:`save`: export the touched accounts, write them to
        RocksDB and hand them to the producer. Returns the sends for :meth:`settle`; until
        that returns, the state is not durable and no input offset may be committed past
        it. The worker stages a batch's state and goes on detecting while the broker
        acknowledges it."""
        evicted = detection.accounts_evicted - self._evicted_seen
        if evicted:
            self._evicted_seen = detection.accounts_evicted
            self.evicted += evicted
            if self._metrics is not None:
                self._metrics.accounts_evicted.inc(evicted)
        touched = detection.pop_touched()
        if not touched:
            return []
        # One record batch per partition (a new one when full) instead of a send() per
        # account: the per-message path of the producer cost more than the detectors.
        open_batches: dict[int, Any] = {}
        sends: list[tuple[asyncio.Future[Any], int]] = []
        # RocksDB rows go in write batches: a put per account cost 5-6 µs, as much as the rest
        # of the save together; in batches of 40 (one full record batch), ~3.5 µs; of 4,000,
        # ~3 (40k accounts, a loaded machine). Each is written before the await that sends a
        # record batch, so as before no row is still unwritten while other tasks run.
        rows = WriteBatch(raw_mode=True)
        saved = 0
        for account_id in touched:
            blob = detection.export_account(account_id)
            partition = account_partition.get(account_id)
            if partition is None:
                continue
            if blob is None:
                rows.delete(_key(partition, account_id))
                # Keep the mapping while the account has counters in an open window: its
                # state, recreated when that window closes, is saved to the same partition.
                if not detection.has_open_window(account_id):
                    del account_partition[account_id]
            else:
                rows.put(_key(partition, account_id), blob)
            key = account_id.encode()
            batch = open_batches.get(partition)
            if batch is None:
                batch = open_batches[partition] = producer.create_batch()
            if batch.append(key=key, value=blob, timestamp=None) is None:
                self._db.write(rows)
                rows = WriteBatch(raw_mode=True)
                sends.append(await self._send(producer, batch, partition))
                batch = open_batches[partition] = producer.create_batch()
                batch.append(key=key, value=blob, timestamp=None)
            saved += 1
        self._db.write(rows)
        for partition, batch in open_batches.items():
            sends.append(await self._send(producer, batch, partition))
        self.saved += saved
        return sends

    async def settle(self, sends: list[tuple[asyncio.Future[Any], int]]) -> None:
        """Wait for the broker to acknowledge what :meth:`stage` sent, then record in RocksDB
        the changelog offset it reflects (a restart reads only the changelog past it)."""
        newest: dict[int, int] = {}
        for fut, count in sends:
            meta = await fut
            last = meta.offset + count - 1
            if last > newest.get(meta.partition, -1):
                newest[meta.partition] = last
        for partition, offset in newest.items():
            # Callers settle in the order they staged (streams/ingest.py chains them).
            self._db[_OFFSET + b"%d" % partition] = b"%d" % offset

    async def _send(
        self, producer: AIOKafkaProducer, batch: Any, partition: int
    ) -> tuple[asyncio.Future[Any], int]:
        batch.close()
        count = batch.record_count()
        return await producer.send_batch(batch, self.topic, partition=partition), count

    async def restore(
        self,
        partitions: Iterable[int],
        detection: Detection,
        account_partition: dict[str, int | None],
    ) -> int:
        """Load the state of ``partitions``: local RocksDB first, then the changelog from the
        offset RocksDB reflects to its end. Returns how many accounts were loaded."""
        parts = sorted(set(partitions))
        if not parts:
            return 0
        t0 = time.monotonic()
        start: dict[int, int] = {}
        loaded = 0
        rejects = _Rejects()
        for p in parts:
            raw = self._db.get(_OFFSET + b"%d" % p)
            prefix = b"%d\x00" % p
            local = []
            if raw is not None:
                rows = self._db.items(from_key=prefix)
                local = list(takewhile(lambda kv, pre=prefix: kv[0].startswith(pre), rows))
            start[p] = int(raw) + 1 if raw is not None else 0
            for k, v in local:
                account_id = self._import(k[len(prefix) :], v, detection, rejects)
                if account_id is None:
                    del self._db[k]  # it will never decode: reject it once, not every restore
                    continue
                account_partition[account_id] = p
                loaded += 1
        loaded += await self._read_tail(start, detection, account_partition, rejects)
        if rejects.count:
            for reason, n in rejects.by_reason.items():
                self.rejected[reason] += n
                if self._metrics is not None:
                    self._metrics.state_records_rejected.labels(reason).inc(n)
            log.warning(
                "skipped %d account state records that do not decode (%s) for partitions %s; "
                "those accounts relearn. First: %s",
                rejects.count,
                ", ".join(f"{r}={n}" for r, n in rejects.by_reason.items() if n),
                parts,
                rejects.first,
            )
        log.info(
            "restored state of %d accounts for partitions %s in %.2fs",
            loaded,
            parts,
            time.monotonic() - t0,
        )
        return loaded

    def _import(
        self, key: bytes | None, value: bytes, detection: Detection, rejects: _Rejects
    ) -> str | None:
        """Load one record into ``detection``; its account id, or None if it was rejected.
        The value is only ever parsed as numbers (never unpickled)."""
        try:
            account_id = key.decode() if key is not None else None
        except UnicodeDecodeError:
            account_id = None
        if account_id is None:
            rejects.add("bad_key", f"key {safe(key, 80)} is not a UTF-8 account id")
            return None
        try:
            detection.import_account(account_id, value)
        except StateFormatError as err:
            rejects.add("bad_format", f"account {safe(account_id, 80)}: {err}")
            return None
        return account_id

    async def _read_tail(
        self,
        start: dict[int, int],
        detection: Detection,
        account_partition: dict[str, int | None],
        rejects: _Rejects,
    ) -> int:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self._client_kwargs
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in start]
            consumer.assign(tps)
            ends: dict[Any, int] = await consumer.end_offsets(tps)
            todo = {}
            for tp in tps:
                if ends[tp] > start[tp.partition]:
                    consumer.seek(tp, start[tp.partition])
                    todo[tp] = ends[tp]
            loaded = 0
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=1000)
                for tp, recs in batch.items():
                    for r in recs:
                        if r.value is None and r.key is not None:
                            # A tombstone: the account was evicted after this state.
                            if self._forget(r.key, tp.partition, detection, account_partition):
                                loaded -= 1
                            continue
                        account_id = self._import(r.key, r.value, detection, rejects)
                        if account_id is None:
                            continue
                        account_partition[account_id] = tp.partition
                        self._db[_key(tp.partition, account_id)] = r.value
                        loaded += 1
                    if recs:
                        self._db[_OFFSET + b"%d" % tp.partition] = b"%d" % recs[-1].offset
                        if recs[-1].offset + 1 >= todo[tp]:
                            del todo[tp]
            return loaded
        finally:
            await consumer.stop()

    def _forget(
        self,
        key: bytes,
        partition: int,
        detection: Detection,
        account_partition: dict[str, int | None],
    ) -> bool:
        """Apply a tombstone; True if it removed an account this restore had loaded."""
        try:
            account_id = key.decode()
        except UnicodeDecodeError:
            return False  # nothing was ever stored under it
        had = detection.export_account(account_id) is not None
        detection.drop_accounts([account_id])
        account_partition.pop(account_id, None)
        del self._db[_key(partition, account_id)]
        return had


class _Rejects:
    """Records skipped during one restore: counted per reason, the first one described."""

    __slots__ = ("by_reason", "count", "first")

    def __init__(self) -> None:
        self.by_reason: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        self.count = 0
        self.first = ""

    def add(self, reason: str, what: str) -> None:
        self.by_reason[reason] += 1
        if not self.count:
            self.first = what
        self.count += 1
