"""``distillwatch replay EVENTS.jsonl --out ALERTS.jsonl``: the detectors over a file, offline.

Runs the same :class:`detectors.pipeline.Monitor` (windows, features, every detector, alert
lifecycle) that the worker runs, built from the same configuration, in event time and
without Kafka. Each output line is one alert state change, exactly the object the worker
writes to the ``alerts`` topic. Deterministic: the same file and config give the same bytes.

Timestamps are checked against each event's own time (an old file is not "too far in the
past"); lines that are not valid events are counted by reason, reported on stderr and
skipped, as the worker would send them to the dead-letter topic.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from detectors.events import InvalidEvent, event_from_dict, parse_event
from detectors.pipeline import Monitor
from streams.config import Config
from streams.gc_tuning import tune_gc

__all__ = ["ReplayStats", "add_arguments", "build_monitor", "monitor_kwargs", "replay", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("events", help="JSON-lines event file ('-' = stdin)")
    p.add_argument("--out", metavar="ALERTS.jsonl", required=True,
                   help="write alert state changes here ('-' = stdout)")
    p.add_argument("--progress-every", type=float, default=2.0, metavar="SECONDS",
                   help="seconds between progress lines on stderr (0 = none)")


def monitor_kwargs(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of the :class:`Monitor` the worker's configuration describes: the
    detection settings plus the alert-book ones."""
    kw = cfg.detection_kwargs()
    kw.setdefault("quiet_windows", cfg.detection.quiet_windows)
    kw.setdefault("max_members", cfg.detection.max_members)
    return kw


def replay_records(cfg: Config, records: Iterable[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    """Alert changes of keyed ``records`` (JSON events in time order, as a producer would send
    them) through one :class:`Monitor` built like the worker's, flushed at the end: the
    offline answer the worker tests and ``bench.scaleout`` compare workers with. Each event
    is read at its own time (``now`` = its ``ts``), so history is never "too old"."""
    mon = Monitor(**monitor_kwargs(cfg))
    out: list[dict[str, Any]] = []
    for _, line in records:
        obj = orjson.loads(line)
        out += mon.add(event_from_dict(obj, now=obj["ts"]))
    return out + mon.flush()


def build_monitor(args: argparse.Namespace) -> Monitor:
    """The worker's detection configuration, as a :class:`Monitor`."""
    from streams.config_cmd import config_from_args

    return Monitor(**monitor_kwargs(config_from_args(args)))


@dataclass
class ReplayStats:
    lines: int = 0
    events: int = 0
    changes: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    first_invalid: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def _events(lines: Iterable[bytes], stats: ReplayStats) -> Iterator[Any]:
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        stats.lines += 1
        try:
            # Unbounded time checks: any finite ts is plausible in a file. parse_event
            # decodes straight into Event (msgspec), several times faster than loads + dict.
            ev = parse_event(line, now=0.0, max_future_s=math.inf, max_past_s=math.inf,
                             max_bytes=len(line))
        except InvalidEvent as err:
            reason, msg = err.reason, str(err)
        else:
            stats.events += 1
            yield ev
            continue
        stats.invalid[reason] += 1
        stats.first_invalid.setdefault(reason, f"line {lineno}: {msg}")


def replay(
    lines: Iterable[bytes],
    monitor: Monitor,
    out: IO[bytes],
    *,
    progress: IO[str] | None = None,
    progress_every_s: float = 2.0,
    size: int | None = None,
    position: Callable[[], int] | None = None,
) -> ReplayStats:
    """Feed every valid event of ``lines`` to ``monitor`` and write each alert change to
    ``out`` as one JSON line. With the input's ``size`` in bytes and a ``position``
    callable (a file's ``tell``), progress lines also say how far it is and when it ends."""
    stats = ReplayStats()
    t0 = last = time.monotonic()
    dumps = orjson.dumps
    for ev in _events(lines, stats):
        changes = monitor.add(ev)
        if changes:
            stats.changes += len(changes)
            out.write(b"".join(dumps(c) + b"\n" for c in changes))
        if progress is not None and not stats.events % 4096:
            now = time.monotonic()
            if now - last >= progress_every_s:
                last = now
                done = position() / size if size and position is not None else None
                _report(progress, stats, now - t0, done)
    changes = monitor.flush()
    stats.changes += len(changes)
    out.write(b"".join(dumps(c) + b"\n" for c in changes))
    stats.seconds = time.monotonic() - t0
    return stats


def _report(out: IO[str], stats: ReplayStats, elapsed: float,
            done: float | None = None) -> None:
    rate = stats.events / elapsed if elapsed > 0 else 0.0
    where = ""
    if done is not None and 0 < done <= 1:
        left = elapsed * (1 - done) / done
        where = f"{done:.0%}, about {left:.0f} s left, "
    out.write(
        f"replay: {where}{stats.events:,} events, {rate:,.0f} events/s, "
        f"{stats.changes:,} alert changes, {sum(stats.invalid.values()):,} invalid\n"
    )
    out.flush()


def run(args: argparse.Namespace) -> int:
    monitor = build_monitor(args)
    tune_gc()
    progress = sys.stderr if args.progress_every > 0 else None
    src: IO[bytes]
    try:
        src = sys.stdin.buffer if args.events == "-" else open(args.events, "rb")  # noqa: SIM115
    except OSError as err:
        print(f"distillwatch replay: cannot read {args.events}: {err.strerror}",
              file=sys.stderr)
        return 2
    try:
        try:
            dst = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")  # noqa: SIM115
        except OSError as err:
            print(f"distillwatch replay: cannot write {args.out}: {err.strerror}",
                  file=sys.stderr)
            return 2
        size = None
        if src is not sys.stdin.buffer:
            with contextlib.suppress(OSError):
                size = os.fstat(src.fileno()).st_size
        try:
            stats = replay(src, monitor, dst, progress=progress,
                           progress_every_s=args.progress_every, size=size,
                           position=src.tell if size else None)
        except OSError as err:
            # e.g. a directory given as the input, or a disk that filled up mid-write
            print(f"distillwatch replay: {err.strerror or err}", file=sys.stderr)
            return 2
        finally:
            if dst is not sys.stdout.buffer:
                dst.close()
    finally:
        if src is not sys.stdin.buffer:
            src.close()
    print(
        f"replay: {stats.events:,} events in {stats.seconds:.1f} s = {stats.rate:,.0f} events/s"
        f"; {stats.changes:,} alert changes -> {args.out}",
        file=sys.stderr,
    )
    bad = sum(stats.invalid.values())
    if bad:
        print(f"replay: skipped {bad:,} invalid line(s) of {stats.lines:,}:", file=sys.stderr)
        for reason, count in sorted(stats.invalid.items()):
            print(f"  {reason}: {count:,} (first: {stats.first_invalid[reason]})",
                  file=sys.stderr)
    if stats.lines and not stats.events:
        # A labels or alerts file given by mistake: saying "0 alerts" and exiting 0 would
        # read as "nothing suspicious in this traffic".
        print(f"distillwatch replay: no line of {args.events} is a request event (is it a "
              "labels or alerts file?)", file=sys.stderr)
        return 1
    return 0
