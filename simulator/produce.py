"""Produce a simulation to Kafka: the ``requests`` topic, key = account_id, in event order,
as fast as possible, in real time, or at an acceleration factor.

Records go out through aiokafka's batch API, grouped per partition (Kafka's default murmur2
partitioner on the key, so an account always lands on the same partition as any other
producer would put it): per-message ``send`` tops out at a few thousand records a second
in kafka-python and ~25k in aiokafka, batches at well over 100k.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from simulator.generate import Simulation
from simulator.writer import account_ids, event_lines

__all__ = ["ProduceStats", "produce", "shift"]

# Sub-batches when pacing: never sleep longer than this without checking the clock.
_MAX_SLEEP_S = 0.5


@dataclass(slots=True)
class ProduceStats:
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def shift(sim: Simulation, offset_s: float) -> None:
    """Move every time in ``sim`` (events, scenario, campaigns) by ``offset_s`` seconds."""
    sim.events.ts = sim.events.ts + offset_s
    sim.t0 += offset_s
    sim.t_end += offset_s
    for c in sim.campaigns:
        c["start_ts"] = round(c["start_ts"] + offset_s, 3)
        c["end_ts"] = round(c["end_ts"] + offset_s, 3)
    t = sim.tables
    t.created = [c + offset_s for c in t.created]


def produce(
    sim: Simulation,
    bootstrap: str,
    topic: str,
    *,
    speed: float | None = None,
    progress: IO[str] | None = None,
    progress_every_s: float = 1.0,
) -> ProduceStats:
    """Send every event of ``sim``. ``speed`` None sends as fast as the broker takes them;
    otherwise event time advances ``speed`` times faster than the wall clock (1 = real time).
    A progress bar and the achieved rate go to ``progress`` (e.g. ``sys.stderr``)."""
    return asyncio.run(_produce(sim, bootstrap, topic, speed, progress, progress_every_s))


async def _produce(
    sim: Simulation,
    bootstrap: str,
    topic: str,
    speed: float | None,
    progress: IO[str] | None,
    progress_every_s: float,
) -> ProduceStats:
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="distillwatch-simulate",
        acks=1,
        linger_ms=10,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    ids = [a.encode() for a in account_ids(sim)]
    ts = sim.events.ts
    n = len(ts)
    t_first = float(ts[0]) if n else 0.0
    wall0 = time.monotonic()
    last_report = wall0
    sent = 0
    try:
        parts = sorted(await producer.partitions_for(topic))
        partitioner = DefaultPartitioner()
        part_of = np.array([partitioner(k, parts, parts) for k in ids], dtype=np.int64)
        lo = 0
        for block in event_lines(sim):
            lines = block.split(b"\n")[:-1]
            hi = lo + len(lines)
            acct = sim.events.acct[lo:hi]
            i = 0
            while i < len(lines):
                j = len(lines)
                if speed is not None:
                    due = wall0 + (ts[lo:hi] - t_first) / speed
                    now = time.monotonic()
                    j = int(np.searchsorted(due, now, side="right"))
                    if j <= i:
                        await asyncio.sleep(min(due[i] - now, _MAX_SLEEP_S))
                        continue
                await _send(producer, topic, lines, acct, part_of, ids, i, j)
                sent += j - i
                i = j
                now = time.monotonic()
                if progress is not None and now - last_report >= progress_every_s:
                    last_report = now
                    _report(progress, sent, n, now - wall0, float(ts[lo + i - 1]) - t_first)
            lo = hi
        await producer.flush()
    finally:
        await producer.stop()
    elapsed = time.monotonic() - wall0
    if progress is not None:
        _report(progress, sent, n, elapsed, float(ts[-1]) - t_first if n else 0.0, end="\n")
    return ProduceStats(sent, elapsed)


async def _send(
    producer: Any,
    topic: str,
    lines: list[bytes],
    acct: np.ndarray,
    part_of: np.ndarray,
    ids: list[bytes],
    i: int,
    j: int,
) -> None:
    """Send lines[i:j] as one batch per partition (split when a batch fills), in order."""
    part = part_of[acct[i:j]]
    futures = []
    for p in np.unique(part).tolist():
        batch = producer.create_batch()
        for k in (np.nonzero(part == p)[0] + i).tolist():
            key, value = ids[acct[k]], lines[k]
            if batch.append(key=key, value=value, timestamp=None) is None:
                batch.close()
                futures.append(await producer.send_batch(batch, topic, partition=p))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        batch.close()
        futures.append(await producer.send_batch(batch, topic, partition=p))
    # Waiting per chunk bounds memory and keeps the progress line honest.
    await asyncio.gather(*futures)


def _report(out: IO[str], sent: int, n: int, elapsed: float, event_s: float, end: str = "") -> None:
    width = 30
    done = int(width * sent / n) if n else width
    bar = "#" * done + "." * (width - done)
    rate = sent / elapsed if elapsed > 0 else 0.0
    out.write(
        f"\rproduce [{bar}] {sent:,}/{n:,} events, {rate:,.0f} ev/s, "
        f"event time +{event_s / 3600:.2f} h{end}"
    )
    out.flush()
