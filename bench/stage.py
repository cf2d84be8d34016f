"""The worker's per-event path without Kafka: :class:`streams.stages.IngestStage` over raw
payloads in batches of 10k, as :mod:`streams.ingest` hands them over. Also times the parts
(parse only, parse + windows) so a regression can be placed, and can profile. Rates are
per CPU second of this process (``time.process_time``), so other load on the machine
skews them less than wall time would.

Run: ``python -m bench.stage --events 300000 --accounts 30000 [--profile cprofile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from bench.gen import accounts, event_dicts
from detectors.events import parse_event
from detectors.pipeline import Detection
from streams.config import Config
from streams.metrics import Metrics
from streams.stages import IngestStage

__all__ = ["main"]


def payloads(n: int, n_accounts: int, span_s: float) -> tuple[list[bytes], float]:
    t_end = time.time()
    acc = accounts(n_accounts, seed=1)
    evs = event_dicts(acc, n, t0=t_end - span_s, span_s=span_s, seed=1)
    return [orjson.dumps(d) for d in evs], t_end


def _rate(n: int, dt: float) -> float:
    return round(n / dt) if dt > 0 else 0


def measure(msgs: list[bytes], now: float, batch: int = 10_000,
            profile: str | None = None) -> dict[str, Any]:
    n = len(msgs)
    out: dict[str, Any] = {"events": n}
    t = time.process_time()
    for m in msgs:
        parse_event(m, now=now)
    out["parse_events_per_s"] = _rate(n, time.process_time() - t)

    det = Detection()
    evs = [parse_event(m, now=now) for m in msgs]
    t = time.process_time()
    add = det.add
    for ev in evs:
        add(ev)
    out["windows_add_events_per_s"] = _rate(n, time.process_time() - t)
    del evs, det
    gc.collect()

    cfg = Config()
    stage = IngestStage(cfg, Metrics.create(CollectorRegistry()))
    # Past the start-up grace, so windows close as they would in a running worker.
    stage._first_wall = now - 3600
    batches = [[(m, i % 4, i) for i, m in enumerate(msgs[lo : lo + batch], start=lo)]
               for lo in range(0, n, batch)]
    prof = cProfile.Profile() if profile == "cprofile" else None
    t = time.process_time()
    if prof is not None:
        prof.enable()
    findings = 0
    for b in batches:
        findings += len(stage.handle(b, now=now).findings)
    if prof is not None:
        prof.disable()
    dt = time.process_time() - t
    out["stage_events_per_s"] = _rate(n, dt)
    out["stage_windows_closed"] = stage.detection.windows_closed
    out["stage_findings"] = findings
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--accounts", type=int, default=30_000)
    p.add_argument("--span-s", type=float, default=900.0)
    p.add_argument("--profile", choices=["cprofile"], default=None)
    a = p.parse_args(argv)
    msgs, now = payloads(a.events, a.accounts, a.span_s)
    print(orjson.dumps(measure(msgs, now, profile=a.profile)).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
