"""``python -m bench.scaleout --workers 1,2,3``: do campaigns survive scale-out?

For each worker count W: an embedded broker, W ``distillwatch worker`` processes in one
group, and a scenario with a big and a small hydra (scenarios/scaleout.toml by default)
produced as a backfill. Prints per W the campaigns raised, their member Jaccard against
``replay`` over the same events, the time from the first event produced to the first
campaign alert, and the events/s of the whole group (events consumed over the time from the
first event produced to the last one consumed), then one ``BENCH`` JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.worker_proc import WorkerProc, total
from streams.broker import EmbeddedBroker
from streams.config import TopicsConfig, load_config
from streams.replay import replay_records

CAMPAIGN = "cluster_campaign"
ENV = {
    "DISTILLWATCH_WINDOWS__SIZE_S": "60",
    "DISTILLWATCH_WINDOWS__LATENESS_S": "1",
    "DISTILLWATCH_WORKER__RECORD_SECRET": "bench-record-secret-0123456789abcdef",
}


def _records(scenario: Path, seed: int) -> list[tuple[bytes, bytes]]:
    import io

    from simulator.generate import generate
    from simulator.produce import shift
    from simulator.scenario import load_scenario
    from simulator.writer import account_ids, write_events

    sim = generate(load_scenario(scenario), seed)
    shift(sim, time.time() - 60 - float(sim.events.ts[-1]))
    buf = io.BytesIO()
    write_events(sim, buf)
    ids = account_ids(sim)
    keys = [ids[a].encode() for a in sim.events.acct.tolist()]
    return list(zip(keys, buf.getvalue().splitlines(), strict=True))


def _members(changes: list[dict[str, Any]], cutoff: float) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for c in changes:
        if c["detector"] == CAMPAIGN and c["window_end"] < cutoff:
            out.setdefault(c["alert_id"], set()).update(c.get("members") or [])
    return out


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def run_group(broker: EmbeddedBroker, workers: int, records: list[tuple[bytes, bytes]],
              want: dict[str, set[str]], cutoff: float, timeout_s: float) -> dict[str, Any]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    prefix = uuid.uuid4().hex[:6]
    base = TopicsConfig()
    names = {f: f"{prefix}-{getattr(base, f)}" for f in TopicsConfig.model_fields
             if f != "partitions"}
    env = {**ENV, **{f"DISTILLWATCH_TOPICS__{f.upper()}": v for f, v in names.items()},
           "DISTILLWATCH_WORKER__APP_ID": f"bench-scale-{prefix}"}
    procs = [WorkerProc(broker.url, env) for _ in range(workers)]
    try:
        while any(p.scrape() is None for p in procs):
            time.sleep(0.5)
        time.sleep(8)  # the groups settle on every worker before the backfill
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        t0 = time.monotonic()
        for key, value in records:
            producer.send(names["requests"], key=key, value=value)
        producer.flush()
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        tp = TopicPartition(names["alerts"], 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        changes: list[dict[str, Any]] = []
        first_alert = consumed_at = None
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                for r in recs:
                    c = json.loads(r.value)
                    changes.append(c)
                    if first_alert is None and c["detector"] == CAMPAIGN:
                        first_alert = time.monotonic() - t0
            if consumed_at is None:
                n = sum(total(m, "distillwatch_events_consumed_total")
                        for m in (p.scrape() for p in procs) if m is not None)
                if n >= len(records):
                    consumed_at = time.monotonic() - t0
            got = _members(changes, cutoff)
            if consumed_at is not None and set(want) <= set(got) and all(
                _jaccard(got[c], want[c]) >= 0.95 for c in want
            ):
                break
        consumer.close()
    finally:
        for p in procs:
            p.stop()
    got = _members(changes, cutoff)
    jac = {c: round(_jaccard(got.get(c, set()), m), 3) for c, m in want.items()}
    return {
        "workers": workers,
        "campaigns": len(got),
        "replay_campaigns": len(want),
        "extra_campaigns": sorted(set(got) - set(want)),
        "jaccard_min": min(jac.values()) if jac else None,
        "jaccard": jac,
        "first_campaign_alert_s": None if first_alert is None else round(first_alert, 2),
        "events_per_s": None if consumed_at is None else round(len(records) / consumed_at),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="1,2,3", help="comma-separated worker counts")
    p.add_argument("--scenario", default=str(Path(__file__).parents[1] / "scenarios"
                                             / "scaleout.toml"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=240.0, help="seconds per worker count")
    args = p.parse_args(argv)
    records = _records(Path(args.scenario), args.seed)
    changes = replay_records(load_config(environ=ENV), records)
    last_ts = max(orjson.loads(line)["ts"] for _, line in records)
    cutoff = last_ts - 180  # windows every worker has surely closed
    want = _members(changes, cutoff)
    print(f"scenario {Path(args.scenario).name}: {len(records):,} events, replay campaigns "
          + ", ".join(f"{c} ({len(m)} members)" for c, m in sorted(want.items())))
    rows = []
    with EmbeddedBroker() as broker:
        for w in [int(x) for x in args.workers.split(",")]:
            rows.append(run_group(broker, w, records, want, cutoff, args.timeout))
            r = rows[-1]
            print(f"W={w}: campaigns {r['campaigns']}/{r['replay_campaigns']} "
                  f"(extra {len(r['extra_campaigns'])}), Jaccard min {r['jaccard_min']}, "
                  f"first campaign alert {r['first_campaign_alert_s']} s, "
                  f"{r['events_per_s']} events/s", flush=True)
    print("| W | campaigns (replay) | member Jaccard vs replay (min) | first campaign alert | "
          "events/s of the group |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['campaigns']} ({r['replay_campaigns']}) | "
              f"{r['jaccard_min']} | {r['first_campaign_alert_s']} s | {r['events_per_s']} |")
    print("BENCH " + json.dumps({"bench": "scaleout", "scenario": Path(args.scenario).name,
                                 "events": len(records), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
