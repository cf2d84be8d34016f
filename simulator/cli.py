"""``distillwatch simulate``: generate labelled traffic from a scenario file.

To a file (sorted by ``ts``; same seed, same bytes)::

    distillwatch simulate scenarios/tiny.toml --seed 1 --out events.jsonl --labels labels.jsonl

To Kafka (key = account_id); paced runs start "now", unpaced ones end "now"::

    distillwatch simulate scenarios/tiny.toml --broker kafka://127.0.0.1:9092 --speed 60
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario TOML file (see scenarios/README.md)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", metavar="EVENTS.jsonl", help="write events here ('-' = stdout)")
    p.add_argument("--labels", metavar="LABELS.jsonl", help="write the ground truth here")
    p.add_argument(
        "--broker", metavar="URL", help="produce to kafka://HOST:PORT instead of a file"
    )
    p.add_argument("--topic", help="topic to produce to (default: topics.requests of the config)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=float, metavar="FACTOR",
        help="with --broker: event time runs FACTOR times faster than the wall clock",
    )
    pace.add_argument("--realtime", action="store_true", help="with --broker: same as --speed 1")
    p.add_argument(
        "--align", choices=("auto", "start", "end", "none"), default="auto",
        help="with --broker: shift times so the first event is now (start), the last event "
        "is now (end: the whole history in the past, for a fast backfill), or keep them; "
        "auto (default) is start when paced (--speed/--realtime) and end otherwise, so an "
        "unpaced run never sends events from the future",
    )


def _tune_malloc() -> None:
    """Keep freed memory in the heap (glibc): generating and rendering allocate large
    short-lived arrays, and on small VMs page-faulting fresh memory for each one costs more
    than the work itself (about 2x on generation). Only the simulate process is affected."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 31)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def run(args: argparse.Namespace) -> int:
    from simulator.generate import generate
    from simulator.scenario import ScenarioError, load_scenario

    if args.broker is None and args.out is None:
        print("distillwatch simulate: give --out FILE or --broker URL", file=sys.stderr)
        return 2
    if (args.speed is not None or args.realtime) and args.broker is None:
        print("distillwatch simulate: --speed/--realtime need --broker", file=sys.stderr)
        return 2
    if args.speed is not None and args.speed <= 0:
        print(f"distillwatch simulate: --speed must be > 0, got {args.speed}", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as err:
        print(f"distillwatch simulate: {err}", file=sys.stderr)
        return 2
    _tune_malloc()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    sim = generate(scenario, args.seed)
    t_gen = time.perf_counter() - t0
    n = len(sim.events)
    accounts = sim.tables.n_accounts
    print(
        f"simulate: {scenario.scenario.name}: {n:,} events, {accounts:,} accounts, "
        f"{len(sim.campaigns)} campaign(s), generated in {t_gen:.2f} s",
        file=sys.stderr,
    )
    if args.broker is not None:
        return _to_broker(args, sim)
    from simulator.writer import write_events, write_labels

    if args.out == "-":
        write_events(sim, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        with open(args.out, "wb") as f:
            write_events(sim, f)
    if args.labels:
        with open(args.labels, "wb") as f:
            write_labels(sim, f)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    size = Path(args.out).stat().st_size if args.out != "-" else 0
    print(
        f"simulate: wrote {n:,} events in {elapsed:.2f} s = {n / max(elapsed, 1e-9):,.0f} "
        f"events/s ({n / max(cpu, 1e-9):,.0f} per CPU-second)"
        f"{f', {size / 1e6:,.1f} MB' if size else ''}"
        f"{f' -> {args.out}' if args.out != '-' else ''}",
        file=sys.stderr,
    )
    return 0


def _to_broker(args: argparse.Namespace, sim: object) -> int:
    from simulator.generate import Simulation
    from simulator.produce import produce, shift
    from streams.config_cmd import config_from_args

    assert isinstance(sim, Simulation)
    if not args.broker.startswith("kafka://"):
        print(f"distillwatch simulate: --broker must be kafka://HOST:PORT, got {args.broker!r}",
              file=sys.stderr)
        return 2
    cfg = config_from_args(args)
    topic = args.topic or cfg.topics.requests
    ts = sim.events.ts
    paced = args.realtime or args.speed is not None
    align = ("start" if paced else "end") if args.align == "auto" else args.align
    if len(ts) and align != "none":
        anchor = float(ts[0]) if align == "start" else float(ts[-1])
        shift(sim, time.time() - anchor)
    if args.labels:
        from simulator.writer import write_labels

        # Labels carry the shifted times so `evaluate` lines up with the worker's alerts.
        with open(args.labels, "wb") as f:
            write_labels(sim, f)
    speed = 1.0 if args.realtime else args.speed
    try:
        stats = produce(
            sim, args.broker.removeprefix("kafka://"), topic, speed=speed, progress=sys.stderr
        )
    except Exception as err:  # kafka-python raises many unrelated types on connect
        print(f"distillwatch simulate: producing to {args.broker} failed: {err}", file=sys.stderr)
        return 1
    print(
        f"simulate: produced {stats.events:,} events to {topic} in {stats.seconds:.1f} s "
        f"= {stats.rate:,.0f} events/s",
        file=sys.stderr,
    )
    return 0
