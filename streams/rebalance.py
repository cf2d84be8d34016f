"""Restore a partition's state before a single record of it is handled.

aiokafka sets a new assignment, and starts fetching it, *before* it awaits the rebalance
listener's ``on_partitions_assigned``: a ``getmany`` running beside a slow restore returns
records of the new partitions to a stage whose state is not there yet (campaign assembly
dropped them, and continued a campaign as if its first windows had never been). Pausing the
partitions first -- synchronously, before the listener's first ``await`` -- holds them back:
aiokafka does not hand out records of a paused partition (already fetched ones are discarded
and fetched again from the same position after ``resume``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["restore_before_fetch"]

log = logging.getLogger(__name__)


async def restore_before_fetch(
    consumer: AIOKafkaConsumer,
    assigned: Iterable[TopicPartition],
    restore: Callable[[], Awaitable[object]],
) -> None:
    """Pause ``assigned``, await ``restore()``, resume. A restore that fails leaves the
    partitions paused (their lag grows, visibly) rather than handling records without
    their state; the next rebalance tries again."""
    tps = list(assigned)
    if tps:
        consumer.pause(*tps)
    try:
        await restore()
    except Exception:
        log.exception("restoring state for %s failed: those partitions stay paused until "
                      "the next rebalance", sorted(f"{tp.topic}:{tp.partition}" for tp in tps))
        raise
    if tps:
        consumer.resume(*tps)
