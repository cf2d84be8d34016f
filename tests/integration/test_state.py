"""AccountStateStore against the real broker: what one worker saves, another restores."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from detectors.events import Event
from detectors.pipeline import Detection
from streams.broker import EmbeddedBroker, create_topics
from streams.state import AccountStateStore, changelog_topic

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
