"""Detector benchmark: replay speed on the large scenario and detector state per account.

Prints a table and one JSON line. Numbers, not assertions (the machine is shared).

    python bench/detectors_bench.py                      # simulate hydra_45d, then measure
    python bench/detectors_bench.py --events FILE.jsonl  # an existing events file
    python bench/detectors_bench.py --limit 500000 --accounts 100000,1000000

Replay speed is measured twice on the same events: the whole offline path (orjson decode,
validation, :class:`detectors.pipeline.Monitor`) and detection alone (events already
parsed). Memory is measured with tracemalloc after every window has closed: everything the
detectors keep (account baselines, populations, cluster keys, templates) divided by the
number of accounts; synthetic accounts (one small request each) are fine for this.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.baseline import AccountBaseline  # noqa: E402
from detectors.events import Event, event_from_dict  # noqa: E402
from detectors.pipeline import Detection, Monitor  # noqa: E402


def _events_file(args: argparse.Namespace) -> Path:
    if args.events:
        return Path(args.events)
    out = Path(tempfile.gettempdir()) / "dw-bench-hydra_45d.jsonl"
    if not out.exists():
        labels = out.with_suffix(".labels.jsonl")
        subprocess.run(
            [sys.executable, "-m", "streams.cli", "simulate", str(ROOT / "scenarios" /
             "hydra_45d.toml"), "--seed", "1", "--out", str(out), "--labels", str(labels)],
            check=True, cwd=ROOT,
        )
    return out


def bench_replay(path: Path, limit: int) -> dict[str, float]:
    lines = []
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            if i >= limit:
                break
            lines.append(line)
    mon = Monitor()
    t = time.perf_counter()
    alerts = 0
    for line in lines:
        ev = event_from_dict(orjson.loads(line), now=4e9, max_past_s=1e10)
        alerts += len(mon.add(ev))
    alerts += len(mon.flush())
    full = time.perf_counter() - t
    events = [event_from_dict(orjson.loads(x), now=4e9, max_past_s=1e10) for x in lines]
    del lines
    mon = Monitor()
    t = time.perf_counter()
    for ev in events:
        mon.add(ev)
    mon.flush()
    detect = time.perf_counter() - t
    return {
        "events": len(events),
        "replay_events_per_s": len(events) / full,
        "detect_events_per_s": len(events) / detect,
        "alert_changes": alerts,
        "accounts": mon.detection.active_accounts,
    }


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_memory(n: int, method: str) -> dict[str, float]:
    """Bytes of detector state per account with ``n`` accounts, one request each, spread
    over 10 windows, every window closed. ``tracemalloc`` counts live Python allocations
    exactly (slow: ~4x); ``rss`` is the growth of the resident set (fast; includes the
    allocator's high-water mark of the transient windows, so it overestimates a little)."""
    gc.collect()
    if method == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = _rss()
    det = Detection()
    t0 = 1_767_600_000.0
    for i in range(n):
        ts = t0 + (i * 600.0) / n
        det.add(
            Event(
                f"acct_{i:012x}", ts, "model-large", 200, 400, event_id=None,
                org_id=f"org_{i:012x}", ip=f"{20 + i % 200}.{(i >> 8) & 255}.{i & 255}.7",
                asn=7000 + i % 500, user_agent=f"client/{i % 50}", tier="pro",
                account_created_ts=t0 - 86400 * (1 + i % 900), status=200,
                stop_reason="end_turn", turn=1 + i % 3,
                prompt_fingerprint=f"{(i * 0x9E3779B97F4A7C15) & (2**64 - 1):016x}",
            )
        )
        if i % 5000 == 0:
            det.advance(ts)
    det.advance(t0 + 10_000)
    gc.collect()
    if method == "tracemalloc":
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    else:
        after = _rss()
    base = AccountBaseline()
    return {
        "accounts": n,
        "method": method,
        "state_bytes_per_account": (after - before) / n,
        "baseline_saved_bytes": len(base.to_bytes()),
        "baseline_object_bytes": base.nbytes(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", help="events file (default: simulate scenarios/hydra_45d.toml)")
    p.add_argument("--limit", type=int, default=1_000_000, help="events to replay")
    p.add_argument("--accounts", default="100000,1000000", help="account counts for memory")
    p.add_argument("--skip-replay", action="store_true")
    p.add_argument(
        "--tracemalloc-max", type=int, default=200_000,
        help="measure with tracemalloc up to this many accounts, RSS growth above",
    )
    args = p.parse_args()
    result: dict[str, object] = {"cpu": os.cpu_count()}
    if not args.skip_replay:
        path = _events_file(args)
        r = bench_replay(path, args.limit)
        result["replay"] = r
        print(f"replay      {path.name}: {r['events']:,} events, "
              f"{r['replay_events_per_s']:,.0f} events/s (decode+validate+detect), "
              f"{r['detect_events_per_s']:,.0f} events/s (detect only), "
              f"{r['accounts']:,} accounts")
    mem = []
    for n in (int(x) for x in args.accounts.split(",")):
        m = bench_memory(n, "tracemalloc" if n <= args.tracemalloc_max else "rss")
        mem.append(m)
        print(f"memory      {n:>9,} accounts: {m['state_bytes_per_account']:,.0f} bytes/account "
              f"({m['method']}) "
              f"of detector state (baseline object {m['baseline_object_bytes']} B, "
              f"saved {m['baseline_saved_bytes']} B)")
    result["memory"] = mem
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
