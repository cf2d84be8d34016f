"""Produce a simulation to Kafka: the ``requests`` topic, key = account_id, in event order,
as fast as possible, in real time, or at an acceleration factor."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import IO

from simulator.generate import Simulation
from simulator.writer import account_ids, event_lines

__all__ = ["ProduceStats", "produce", "shift"]


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
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="distillwatch-simulate",
        linger_ms=20,
        batch_size=512 * 1024,
        acks=1,
    )
    ids = [a.encode() for a in account_ids(sim)]
    acct = sim.events.acct
    ts = sim.events.ts
    n = len(ts)
    t_first = float(ts[0]) if n else 0.0
    wall0 = time.monotonic()
    last_report = wall0
    sent = 0
    try:
        for block in event_lines(sim):
            lines = block.split(b"\n")[:-1]
            for line in lines:
                if speed is not None:
                    due = wall0 + (ts[sent] - t_first) / speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                producer.send(topic, key=ids[acct[sent]], value=line)
                sent += 1
            now = time.monotonic()
            if progress is not None and now - last_report >= progress_every_s:
                last_report = now
                _report(progress, sent, n, now - wall0, float(ts[sent - 1]) - t_first)
        producer.flush()
    finally:
        producer.close()
    elapsed = time.monotonic() - wall0
    if progress is not None:
        _report(progress, sent, n, elapsed, float(ts[-1]) - t_first if n else 0.0, end="\n")
    return ProduceStats(sent, elapsed)


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
