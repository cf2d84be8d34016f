"""The worker's event-time watermark, from what each partition has delivered and what the
broker has proven about it.

Why this exists: results must not depend on how fast the worker runs. The offline ``replay``
closes a window when the stream's newest event time passes its end plus the lateness; the
worker must close the same windows with the same events in them, whether it is caught up,
lagging behind a backlog, stalled by a busy disk, or fed by a slow producer. Two rules give
that:

1. **A partition with unread records holds the watermark back.** Its watermark is the newest
   event time it has delivered, nothing more; a partition the broker has not yet reported on
   (just assigned, first fetch still in flight) holds it at minus infinity. Since each
   partition's events arrive in time order (the gateway keys them by account and writes
   them as they happen), no event of a partition is ever behind the minimum over all
   partitions: nothing is late, at any processing speed.
2. **Only a partition proven caught up may move on with the wall clock.** When the latest
   fetch response showed that everything up to the partition's end offset has been handed to
   the worker, the partition may be quiet rather than slow, so its watermark advances by the
   wall time between the arrival of its newest event and that fetch response: time the broker
   vouches for. A stalled worker makes no fetches, so a stall never advances anything; a
   quiet producer does, which is what closes the last windows of live traffic.

A caught-up partition that has never delivered an event does not constrain the watermark.

Examples
--------
>>> clocks = PartitionClocks()
>>> clocks.assigned([0, 1])
>>> clocks.delivered(0, ts=100.0, at=1000.0)
>>> clocks.watermark() is None         # partition 1: nothing delivered, no fetch response yet
True
>>> clocks.delivered(1, ts=50.0, at=1000.0)
>>> clocks.fetched(0, position=10, end_offset=10, at=1000.5)
>>> clocks.fetched(1, position=3, end_offset=90, at=1000.5)   # partition 1 lags
>>> clocks.watermark()
50.0
>>> clocks.fetched(1, position=90, end_offset=90, at=1004.0)  # caught up; quiet since 1000
>>> clocks.watermark()
54.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PartitionClock", "PartitionClocks"]

_NEG_INF = -math.inf


@dataclass(slots=True)
class PartitionClock:
    """What is known about one partition.

    ``ts`` is the newest event time delivered and ``arrived`` the wall time it arrived;
    ``caught_up`` and ``proven_at`` come from the latest fetch response: whether the worker
    had consumed up to the end offset it reported, and when it came.
    """

    ts: float = _NEG_INF
    arrived: float = _NEG_INF
    reported: bool = False
    caught_up: bool = False
    proven_at: float = _NEG_INF

    def watermark(self) -> float | None:
        """This partition's contribution (``None``: it does not constrain the minimum)."""
        if not (self.reported and self.caught_up):
            return self.ts
        if self.ts == _NEG_INF:
            return None
        quiet = self.proven_at - self.arrived
        return self.ts + quiet if quiet > 0.0 else self.ts


class PartitionClocks:
    """Per-partition event-time progress; the watermark is the minimum over partitions."""

    def __init__(self) -> None:
        self._clocks: dict[int | None, PartitionClock] = {}

    def _clock(self, partition: int | None) -> PartitionClock:
        c = self._clocks.get(partition)
        if c is None:
            c = self._clocks[partition] = PartitionClock()
        return c

    def delivered(self, partition: int | None, ts: float, at: float) -> None:
        """A valid event with time ``ts`` of ``partition`` arrived at wall time ``at``."""
        c = self._clock(partition)
        if ts > c.ts:
            c.ts = ts
            c.arrived = at

    def fetched(
        self, partition: int | None, *, position: int | None, end_offset: int | None, at: float
    ) -> None:
        """The latest fetch response for ``partition`` (at wall time ``at``) reported
        ``end_offset``; the worker has consumed up to ``position``. ``None`` for either
        means the broker has not reported yet."""
        c = self._clock(partition)
        if end_offset is None or position is None:
            c.reported = False
            return
        c.reported = True
        c.caught_up = position >= end_offset
        if c.caught_up:
            c.proven_at = at

    def assigned(self, partitions: Iterable[int | None]) -> None:
        """Track these partitions (unknown until their first fetch response)."""
        for p in partitions:
            self._clock(p)

    def release(self, partitions: Iterable[int | None]) -> None:
        for p in partitions:
            self._clocks.pop(p, None)

    def lagging(self) -> list[int | None]:
        """Partitions that hold the watermark back because they are not proven caught up."""
        return [p for p, c in self._clocks.items() if not (c.reported and c.caught_up)]

    def watermark(self) -> float | None:
        """The smallest partition watermark; ``None`` while no partition has any event or
        a partition still waits for its first fetch response."""
        out: float | None = None
        for c in self._clocks.values():
            w = c.watermark()
            if w is None:
                continue
            if w == _NEG_INF:
                return None
            if out is None or w < out:
                out = w
        return out

    def __len__(self) -> int:
        return len(self._clocks)
