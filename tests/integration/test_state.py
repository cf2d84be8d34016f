"""AccountStateStore against the real broker: what one worker saves, another restores; what
anyone else writes to the changelog or the local store is data, never code."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry
from rocksdict import Rdict

from detectors.events import Event
from detectors.pipeline import Detection
from streams.broker import EmbeddedBroker, create_topics
from streams.metrics import Metrics
from streams.state import AccountStateStore, _key, changelog_topic

PARTITIONS = 3


def _detection_with(accounts: int) -> tuple[Detection, dict[str, int | None]]:
    det = Detection()
    where: dict[str, int | None] = {}
    t0 = 1_767_600_000.0
    for w in range(3):
        for i in range(accounts):
            a = f"acct-{i}"
            det.add(Event(a, t0 + w * 60 + i % 50, "m", 100 + i, 50 * (w + 1), event_id=f"{a}-{w}"))
            where[a] = i % PARTITIONS
        det.advance(t0 + (w + 1) * 60 + 30)
    return det, where


async def _save(store: AccountStateStore, det: Detection, where: dict[str, int | None]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=store.bootstrap)
    await producer.start()
    try:
        await store.save(producer, det, where)
    finally:
        await producer.stop()


def test_saved_state_is_restored_from_the_changelog_and_from_rocksdb(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    app_id = f"state-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, {changelog_topic(app_id): PARTITIONS}, compact=True)
    # Enough accounts that a partition's records need more than one producer batch (16 KiB).
    det, where = _detection_with(600)
    store = AccountStateStore(broker.bootstrap, app_id, tmp_path / "a")
    try:
        asyncio.run(_save(store, det, where))
        assert store.saved == 600
        assert not det.pop_touched()  # save() took them
    finally:
        store.close()

    # Another worker with an empty disk: everything comes from the changelog.
    fresh, fresh_where = Detection(), {}
    other = AccountStateStore(broker.bootstrap, app_id, tmp_path / "b")
    try:
        loaded = asyncio.run(other.restore([0, 1], fresh, fresh_where))
    finally:
        other.close()
    mine = sorted(a for a, p in where.items() if p in (0, 1))
    assert loaded == len(mine)
    assert sorted(fresh_where) == mine
    for a in mine:
        assert fresh.export_account(a) == det.export_account(a), a
    assert fresh.export_account("acct-2") is None  # partition 2 was not asked for

    # The first worker restarting: RocksDB holds it all and the changelog has no newer tail.
    again, again_where = Detection(), {}
    store = AccountStateStore(broker.bootstrap, app_id, tmp_path / "a")
    try:
        loaded = asyncio.run(store.restore(range(PARTITIONS), again, again_where))
    finally:
        store.close()
    assert loaded == 600
    assert again.export_account("acct-599") == det.export_account("acct-599")


# -- state from the wire is data, never code ---------------------------------------------------


class _Boom:
    """An attacker's changelog record: unpickling it runs ``touch marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


async def _produce(
    bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


def _rejected(registry: CollectorRegistry, reason: str) -> float:
    v = registry.get_sample_value("distillwatch_state_records_rejected_total", {"reason": reason})
    return v or 0.0


def test_forged_state_is_counted_and_skipped_never_executed(
    broker: EmbeddedBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app_id = f"state-{uuid.uuid4().hex[:8]}"
    topic = changelog_topic(app_id)
    create_topics(broker.bootstrap, {topic: PARTITIONS}, compact=True)
    det, where = _detection_with(30)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Boom(marker), protocol=pickle.HIGHEST_PROTOCOL)
    good = det.export_account("acct-0")
    assert good is not None

    store = AccountStateStore(broker.bootstrap, app_id, tmp_path / "a")
    try:
        asyncio.run(_save(store, det, where))
        # Poison in the local RocksDB (a disk another process could write)...
        store._db[_key(0, "evil-local")] = payload
    finally:
        store.close()
    # ...and on the changelog topic, after the offsets RocksDB reflects (its tail).
    asyncio.run(
        _produce(
            broker.bootstrap,
            topic,
            [
                (0, b"evil-tail", payload),
                (1, b"evil-garbage", b"\x01" + b"\xff" * 37),
                (2, None, payload),  # no key
                (0, b"\xff\xfe-not-utf8", good),  # valid state, key not an account id
                (0, b"acct-3", None),  # a tombstone: acct-3 was evicted by its owner
            ],
        )
    )

    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    restored: dict[str, int | None] = {}
    fresh = Detection()
    caplog.set_level(logging.INFO, logger="streams.state")
    store = AccountStateStore(broker.bootstrap, app_id, tmp_path / "a", metrics)
    try:
        loaded = asyncio.run(store.restore(range(PARTITIONS), fresh, restored))
    finally:
        store.close()

    assert not marker.exists(), "a state record was executed"
    # The local pickle and the tail's pickle and garbage; the keyless and non-UTF-8 keys.
    assert store.rejected == {"bad_format": 3, "bad_key": 2}
    assert _rejected(registry, "bad_format") == 3 and _rejected(registry, "bad_key") == 2
    # Only our logger: the Kafka client warns on its own when the machine is slow.
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name == "streams.state"
    ]
    assert len(warnings) == 1, "one line per restore, not one per record"
    assert "skipped 5 account state records" in warnings[0].getMessage()
    assert "0x80" in warnings[0].getMessage()
    # Everything else restored, byte for byte; the tombstoned account is gone for good.
    expect = sorted(a for a in where if a != "acct-3")
    assert sorted(restored) == expect and loaded == len(expect)
    for a in expect:
        assert fresh.export_account(a) == det.export_account(a), a
    assert fresh.export_account("acct-3") is None
    for bad in ("evil-local", "evil-tail", "evil-garbage"):
        assert fresh.export_account(bad) is None

    # A worker with an empty disk reads the same topic: same verdict, still nothing executed;
    # the bad local row was deleted, so it is not rejected again either.
    for folder in ("b", "a"):
        again: dict[str, int | None] = {}
        other = AccountStateStore(broker.bootstrap, app_id, tmp_path / folder)
        try:
            asyncio.run(other.restore(range(PARTITIONS), Detection(), again))
        finally:
            other.close()
        assert not marker.exists()
        assert sorted(again) == expect
        if folder == "a":
            assert other.rejected == {"bad_format": 0, "bad_key": 0}  # tail already read
        else:
            assert other.rejected == {"bad_format": 2, "bad_key": 2}


def test_evicted_accounts_are_tombstoned_in_the_changelog_and_rocksdb(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    app_id = f"state-{uuid.uuid4().hex[:8]}"
    topic = changelog_topic(app_id)
    create_topics(broker.bootstrap, {topic: PARTITIONS}, compact=True)
    t0 = 1_767_600_000.0
    det = Detection(window_s=60, lateness_s=0, account_ttl_s=3600)
    where: dict[str, int | None] = {}
    for i in range(6):
        det.add(Event(f"gone-{i}", t0 + i, "m", 10, 100))
        where[f"gone-{i}"] = i % PARTITIONS
    where["keeper"] = 1
    registry = CollectorRegistry()
    store = AccountStateStore(broker.bootstrap, app_id, tmp_path / "a", Metrics.create(registry))
    try:
        det.advance(t0 + 60)
        asyncio.run(_save(store, det, where))
        for m in range(1, 70):  # the keeper stays active for more than the TTL
            det.add(Event("keeper", t0 + m * 60 + 1, "m", 10, 100))
            det.advance(t0 + (m + 1) * 60)
        asyncio.run(_save(store, det, where))
        assert store.evicted == 6
        assert registry.get_sample_value("distillwatch_accounts_evicted_total") == 6
        assert sorted(where) == ["keeper"]  # the partition map forgets them too
        assert not [k for k in store._db.keys() if b"gone-" in k]  # noqa: SIM118 (Rdict)
    finally:
        store.close()

    async def tail() -> list[tuple[bytes, bytes | None]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            got = await consumer.getmany(timeout_ms=5000)
            return [(r.key, r.value) for recs in got.values() for r in recs]
        finally:
            await consumer.stop()

    records = asyncio.run(tail())
    assert sorted(k for k, v in records if v is None) == [b"gone-%d" % i for i in range(6)]
    fresh, fresh_where = Detection(window_s=60, lateness_s=0, account_ttl_s=3600), {}
    other = AccountStateStore(broker.bootstrap, app_id, tmp_path / "b")
    try:
        loaded = asyncio.run(other.restore(range(PARTITIONS), fresh, fresh_where))
    finally:
        other.close()
    assert sorted(fresh_where) == ["keeper"] and loaded == 1
    assert fresh.export_account("keeper") == det.export_account("keeper")


def test_a_local_store_that_can_hold_pickles_is_set_aside_unread(
    broker: EmbeddedBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The attacker writes the data folder with rocksdict's default mode, the one this store
    used before, where a value that is an object is pickled and unpickled on read: the worker
    must not read that folder at all, and restores every account from the changelog."""
    app_id = f"state-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, {changelog_topic(app_id): PARTITIONS}, compact=True)
    det, where = _detection_with(12)
    store = AccountStateStore(broker.bootstrap, app_id, tmp_path / "b")
    try:
        asyncio.run(_save(store, det, where))
    finally:
        store.close()

    marker = tmp_path / "pwned"
    folder = tmp_path / "a"
    folder.mkdir()
    old = Rdict(str(folder / "account-state.rdb"))  # default mode: values tagged, pickled
    try:
        old[_key(0, "acct-0")] = _Boom(marker)
        old[b"\x00offset\x000"] = _Boom(marker)  # the offset row is read first
    finally:
        old.close()

    caplog.set_level(logging.WARNING, logger="streams.state")
    restored: dict[str, int | None] = {}
    fresh = Detection()
    store = AccountStateStore(broker.bootstrap, app_id, folder)
    try:
        loaded = asyncio.run(store.restore(range(PARTITIONS), fresh, restored))
    finally:
        store.close()
    assert not marker.exists(), "the local store unpickled a value"
    assert sorted(restored) == sorted(where) and loaded == len(where)
    for a in where:
        assert fresh.export_account(a) == det.export_account(a), a
    aside = [p.name for p in folder.iterdir() if ".untrusted-" in p.name]
    assert len(aside) == 1, "the old folder is kept for an operator, not deleted or read"
    assert any("moved to" in r.getMessage() for r in caplog.records)


def test_a_pickle_type_tag_in_the_raw_store_is_just_bad_bytes(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """In raw mode a value that starts with rocksdict's pickle tag (0x06) is only bytes: it
    fails to decode as state, is counted and deleted, and is never executed."""
    app_id = f"state-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, {changelog_topic(app_id): PARTITIONS}, compact=True)
    det, where = _detection_with(6)
    marker = tmp_path / "pwned"
    tagged = b"\x06" + pickle.dumps(_Boom(marker), protocol=pickle.HIGHEST_PROTOCOL)
    store = AccountStateStore(broker.bootstrap, app_id, tmp_path / "a")
    try:
        asyncio.run(_save(store, det, where))
        store._db[_key(0, "evil")] = tagged
        store._db[_key(1, "acct-1")] = tagged  # over a real account's row
    finally:
        store.close()
    restored: dict[str, int | None] = {}
    store = AccountStateStore(broker.bootstrap, app_id, tmp_path / "a")
    try:
        asyncio.run(store.restore(range(PARTITIONS), Detection(), restored))
        assert store._db.get(_key(0, "evil")) is None
    finally:
        store.close()
    assert not marker.exists()
    assert store.rejected["bad_format"] == 2
    assert "evil" not in restored and "acct-1" not in restored
