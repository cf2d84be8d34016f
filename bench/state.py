"""Bytes of detector state per active account, measured in-process.

Every one of ``--accounts`` accounts is active in each of ``--windows`` consecutive windows
(``--per-window`` events each, the realistic field mix of :mod:`bench.gen`), fed straight into
:class:`detectors.pipeline.Detection` (no Kafka, no JSON). Two numbers per size:

- *open*: deep size of the ``Detection`` object graph while the last window is still open
  (the per-window counters, the events they keep for attributes, plus everything below);
- *persistent*: deep size once every window has closed: what the worker keeps per account
  between windows (baselines, population and cluster state, template index).

The deep size walks the object graph with :func:`gc.get_referents` and ``sys.getsizeof``
(each object once; classes, functions and modules excluded), plus the keys of every dict
(the GC skips the keys of an all-string-keyed dict), so it counts exactly the live objects,
without allocator slack. ``--parts`` splits the persistent bytes by owner. The RSS growth
of the process is printed beside it: it includes allocator slack and freed-but-kept arenas,
so it is an upper bound.

Run: ``python -m bench.state --accounts 100000`` (prints one JSON line).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import types
from typing import Any

import numpy as np
import orjson

from bench.gen import accounts, event_dicts
from detectors.events import Event
from detectors.pipeline import Detection

__all__ = ["deep_size", "measure"]

_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
         types.MethodType, types.CodeType)


def deep_size(root: object, seen: set[int] | None = None) -> int:
    """Bytes of every object reachable from ``root`` (each counted once; objects already in
    ``seen`` are not counted, and what is counted is added to it)."""
    if seen is None:
        seen = set()
    stack = [root]
    total = 0
    getsizeof, referents = sys.getsizeof, gc.get_referents
    while stack:
        obj = stack.pop()
        oid = id(obj)
        if oid in seen or isinstance(obj, _SKIP):
            continue
        seen.add(oid)
        total += getsizeof(obj)
        stack.extend(referents(obj))
        if isinstance(obj, dict):
            # The GC does not visit the keys of a dict whose keys are all strings (they
            # cannot form cycles): account ids used as keys would go uncounted.
            stack.extend(obj)
    return total


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def breakdown(det: Detection) -> dict[str, int]:
    """Deep bytes of each part of ``det``, each object counted once, in this order (so the
    account-id strings, shared by every part, are counted with the baselines)."""
    parts: list[tuple[str, list[object]]] = [
        ("baselines", [det._baselines]),
        ("eviction_index", [getattr(det, n) for n in
                            ("_bucket_of", "_by_bucket", "_bucket_heap", "_stale")
                            if hasattr(det, n)]),
        ("populations", [det._populations]),
        ("coactivity", [det.coactivity]),
        ("cohort", [det.cohort]),
        ("cluster_stages", [det.cluster_stages]),
        ("windower", [det.windower]),
        ("rest", [det]),
    ]
    seen: set[int] = set()
    return {name: sum(deep_size(r, seen) for r in roots) for name, roots in parts}


def measure(n_accounts: int, windows: int = 3, per_window: int = 2, window_s: float = 60.0,
            chunk: int = 200_000, seed: int = 3, local_clusters: bool = True,
            parts: bool = False) -> dict[str, Any]:
    acc = accounts(n_accounts, seed=seed)
    det = Detection(window_s=window_s, lateness_s=0.0, local_clusters=local_clusters)
    gc.collect()
    rss0 = rss()
    base0 = deep_size(det)
    tracked0 = len(gc.get_objects())
    t0 = 1_790_000_000.0 - 1_790_000_000.0 % window_s
    rng = np.random.default_rng(seed)
    n = n_accounts * per_window
    open_size = 0
    started = time.perf_counter()
    fed = 0
    for w in range(windows):
        start = t0 + w * window_s
        order = rng.permutation(np.tile(np.arange(n_accounts), per_window))
        step = window_s / max(1, -(-n // chunk))
        for i, lo in enumerate(range(0, n, chunk)):
            part = order[lo : lo + chunk]
            for d in event_dicts(acc, len(part), t0=start + i * step, span_s=step * 0.999,
                                 seed=seed * 1000 + w * 100 + i, only=part,
                                 id_prefix=f"w{w}c{i}-"):
                det.add(Event(**d))
            fed += len(part)
        if w == windows - 1:
            gc.collect()
            open_size = deep_size(det) - base0
            rss_open = rss() - rss0
        det.advance(start + window_s)
        # The worker saves the touched accounts after each close, which empties this set.
        det.pop_touched()
        # Without local cluster stages the worker publishes the summaries and drops them.
        det.pop_summaries()
    elapsed = time.perf_counter() - started
    gc.collect()
    persistent = deep_size(det) - base0
    tracked = len(gc.get_objects()) - tracked0
    extra: dict[str, Any] = {}
    if parts:
        extra["parts_bytes_per_account"] = {
            k: round(v / n_accounts) for k, v in breakdown(det).items()}
    return {
        "accounts": n_accounts,
        "windows": windows,
        "events": fed,
        "seconds": round(elapsed, 1),
        "open_bytes_per_account": round(open_size / n_accounts),
        "persistent_bytes_per_account": round(persistent / n_accounts),
        "rss_open_bytes_per_account": round(rss_open / n_accounts),
        "rss_bytes_per_account": round((rss() - rss0) / n_accounts),
        # Objects the cyclic GC walks at every full collection, per account.
        "gc_tracked_per_account": round(tracked / n_accounts, 2),
        "active_accounts": det.active_accounts,
        "local_clusters": local_clusters,
        **extra,
    }


def steady(n_accounts: int = 2000, windows: int = 90, ttl_s: float = 3600.0) -> dict[str, Any]:
    """Every account active in every one of ``windows`` one-minute windows (one event each),
    with an eviction TTL of ``ttl_s`` (an hour: 60 eviction buckets of one window, as a
    week's 128 buckets of 79 windows are for an account active all week). What the three
    windows of :func:`measure` cannot show: state that piles up while accounts stay
    active (per-bucket and per-minute indexes)."""
    t0 = 1_767_600_000.0
    det = Detection(window_s=60.0, lateness_s=0.0, account_ttl_s=ttl_s, local_clusters=False)
    ids = [f"acct_{i:010d}" for i in range(n_accounts)]
    for w in range(windows):
        for a in ids:
            det.add(Event(a, t0 + w * 60 + 1, "m", 100, 400, event_id=f"{a}@{w}"))
        det.advance(t0 + w * 60 + 60)
        det.pop_touched()
        det.pop_summaries()
    gc.collect()
    parts = breakdown(det)
    return {"steady_accounts": n_accounts, "windows": windows, "ttl_s": ttl_s,
            "persistent_bytes_per_account": round(sum(parts.values()) / n_accounts),
            "parts_bytes_per_account": {k: round(v / n_accounts) for k, v in parts.items()
                                        if v >= n_accounts}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--per-window", type=int, default=2, help="events per account and window")
    p.add_argument("--no-local-clusters", action="store_true",
                   help="as the worker: no in-process cluster stages (they run on their own "
                        "topics there); the window's summaries are dropped after each close")
    p.add_argument("--parts", action="store_true",
                   help="also the persistent bytes per account of each part of the detection")
    p.add_argument("--steady", action="store_true",
                   help="instead: 2,000 accounts active in each of 90 windows (see steady())")
    a = p.parse_args(argv)
    if a.steady:
        print(orjson.dumps(steady()).decode(), flush=True)
        return 0
    res = measure(a.accounts, a.windows, a.per_window, local_clusters=not a.no_local_clusters,
                  parts=a.parts)
    print(orjson.dumps(res).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
