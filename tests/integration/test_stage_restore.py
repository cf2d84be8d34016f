"""A stage handles no record of a newly assigned partition before that partition's state is
restored. aiokafka starts fetching a new assignment before it awaits the rebalance listener;
campaign assembly used to drop what arrived during its restore, and under load (a slow
restore) the successor of a killed assembler skipped the first windows of a campaign, resolved
its alert and opened it again under a new id (found by the kill test beside stress-ng)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import CollectorRegistry

from detectors.summary import encode
from streams.broker import EmbeddedBroker
from streams.cluster import CampaignStageService
from streams.cluster_topics import ensure_cluster_topics, windows_topic
from streams.config import load_config
from streams.metrics import Metrics
from streams.rebalance import restore_before_fetch
from tests.conftest import isolated_topics, produce

pytestmark = pytest.mark.integration

WINDOWS = 12


def _windows_records() -> list[tuple[bytes | None, bytes]]:
    """Twelve one-minute windows of one key partition: ten suspects a minute sharing a card,
    six accounts rotating (the campaign of detectors.assembly's example)."""
    out: list[tuple[bytes | None, bytes]] = []
    for minute in range(WINDOWS):
        susp = [{"a": f"h{minute % 6}-{i}", "w": minute * 60.0, "k": [["pay", "card-1"]],
                 "x": 0.8, "y": True, "r": True, "n": 1, "o": 2000, "g": None,
                 "m": {"m": 1}, "f": []} for i in range(10)]
        out.append((None, encode({"t": "wt", "w": minute * 60.0, "p": 0,
                                  "keys": [["pay:card-1", 10]], "susp": susp})))
        out.append((None, encode({"t": "wm", "p": 0, "n": 1, "b": minute * 60.0 + 60})))
    return out


def test_campaign_assembly_restored_slowly_loses_no_window(broker: EmbeddedBroker) -> None:
    _, env = isolated_topics()
    app_id = f"dw-restore-{uuid.uuid4().hex[:6]}"
    cfg = load_config(environ={
        **env, "DISTILLWATCH_BROKER__URL": broker.url, "DISTILLWATCH_WORKER__APP_ID": app_id,
        "DISTILLWATCH_WINDOWS__SIZE_S": "60", "DISTILLWATCH_DETECTION__CLUSTER_MIN_MEMBERS": "5",
    })
    ensure_cluster_topics(broker.bootstrap, app_id, cfg.topics.partitions)
    produce(broker, windows_topic(app_id), _windows_records())

    class SlowRestore(CampaignStageService):
        async def on_assigned(self, partitions: list[int]) -> None:
            # A loaded machine: the snapshot read takes seconds, fetching goes on meanwhile.
            await asyncio.sleep(3.0)
            await super().on_assigned(partitions)

    async def run() -> tuple[int, int]:
        svc = SlowRestore(cfg, Metrics.create(CollectorRegistry()))
        await svc.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                asm = svc.assembly
                if asm is not None and asm.windows >= WINDOWS:
                    break
                await asyncio.sleep(0.2)
            asm = svc.assembly
            assert asm is not None, "the windows partition was never assigned"
            return asm.windows, len(asm.clusters.campaigns)
        finally:
            await svc.stop()

    windows, campaigns = asyncio.run(run())
    assert windows == WINDOWS, f"assembled {windows} of {WINDOWS} windows"
    assert campaigns == 1


def test_paused_partition_yields_nothing_until_restored(broker: EmbeddedBroker) -> None:
    """The helper itself, on a real consumer group: records fetched while the restore runs
    are held back, and every record comes out afterwards, from the first."""
    topic = f"restore-{uuid.uuid4().hex[:8]}"
    produce(broker, topic, [(None, b"%d" % i) for i in range(50)])
    seen_during: list[int] = []
    order: list[str] = []

    async def run() -> list[int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap,
                                    group_id=f"g-{uuid.uuid4().hex[:6]}",
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    rebalance_timeout_ms=4000, session_timeout_ms=10_000)
        restored = asyncio.Event()

        async def restore() -> None:
            order.append("restore")
            await asyncio.sleep(2.0)  # the loop below keeps calling getmany meanwhile
            restored.set()

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: object) -> None: ...

            async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
                await restore_before_fetch(consumer, assigned, restore)

        consumer.subscribe([topic], listener=Listener())
        await consumer.start()
        got: list[int] = []
        polls = 0
        try:
            deadline = time.monotonic() + 30
            while len(got) < 50 and time.monotonic() < deadline:
                polls += not restored.is_set()
                for recs in (await consumer.getmany(timeout_ms=200)).values():
                    if not restored.is_set():
                        seen_during.append(len(recs))
                    got.extend(int(r.value) for r in recs)
        finally:
            await consumer.stop()
        polls_during.append(polls)
        return got

    polls_during: list[int] = []
    got = asyncio.run(run())
    assert order == ["restore"]
    assert polls_during[0] > 0, "the restore was over before the test fetched anything"
    assert sum(seen_during) == 0, "records came out before the restore finished"
    assert sorted(got) == list(range(50)), "a record was lost or handed out twice"
