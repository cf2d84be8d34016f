"""Run scenarios through simulate -> replay -> evaluate and print one summary table.

    python -m evaluation.suite                       # every scenarios/*.toml but hydra_45d
    python -m evaluation.suite scenarios/tiny.toml scenarios/mix.toml --seed 1
    python -m evaluation.suite --all --out-dir /tmp/dw   # including the 100k-account one

Uses the same configuration as ``replay`` (``--config`` / ``DISTILLWATCH_*``), so the table
is what one detector configuration gives on every scenario. Files are kept in
``--out-dir`` for a closer look with ``distillwatch evaluate``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "run_scenario"]

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
BIG = {"hydra_45d"}


def run_scenario(path: Path, seed: int, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from evaluation.baseline import rate_limit_score
    from evaluation.report import format_report
    from evaluation.score import Labels, read_jsonl, score
    from simulator.generate import generate
    from simulator.scenario import load_scenario
    from simulator.writer import write_events, write_labels
    from streams.replay import build_monitor, replay

    name = path.stem
    ev, lab, al = (out_dir / f"{name}.{x}.jsonl" for x in ("events", "labels", "alerts"))
    t0 = time.perf_counter()
    sim = generate(load_scenario(path), seed)
    with open(ev, "wb") as f:
        n = write_events(sim, f)
    with open(lab, "wb") as f:
        write_labels(sim, f)
    sim_s = time.perf_counter() - t0
    del sim
    with open(ev, "rb") as src, open(al, "wb") as dst:
        stats = replay(src, build_monitor(args), dst, progress=sys.stderr, progress_every_s=30)
    labels = Labels.read(lab)
    ours = score(labels, read_jsonl(al))
    limit, base = rate_limit_score(labels, ev, ours.false_alerts)
    report = format_report(labels, ours, base)
    (out_dir / f"{name}.report.txt").write_text(report + "\n")
    return {"name": name, "events": n, "sim_rate": n / sim_s, "replay_rate": stats.rate,
            "ours": ours, "base": base, "limit": limit}


def _fmt_campaigns(score: Any) -> str:
    parts = []
    for c in score.campaigns:
        if c.detected:
            d = c.delay_s or 0.0
            delay = f"{d / 60:.0f}m" if abs(d) < 3600 else f"{d / 3600:.1f}h"
        else:
            delay = "missed"
        parts.append(f"{c.kind} {delay} {100 * c.share_flagged:.0f}%")
    return "; ".join(parts) or "-"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| scenario | events | precision | recall | FA/1k/day | crit FA | campaigns "
            "(delay, flagged) | rate limit T | RL recall | RL campaigns |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        o, b = r["ours"], r["base"]
        lines.append(
            f"| {r['name']} | {r['events']:,} | {_num(o.precision)} | {_num(o.recall)} | "
            f"{o.false_alerts_per_1k_day:.2f} | {o.critical_false_alerts} | {_fmt_campaigns(o)} "
            f"| {r['limit']}/h | {_num(b.recall)} | {_fmt_campaigns(b)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenarios", nargs="*", type=Path)
    p.add_argument("--all", action="store_true", help="include hydra_45d (100k accounts)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out-dir", type=Path, default=Path("/tmp/distillwatch-suite"))
    p.add_argument("-c", "--config", help="distillwatch TOML configuration")
    args = p.parse_args(argv)
    paths = args.scenarios or [
        s for s in sorted(SCENARIOS.glob("*.toml")) if args.all or s.stem not in BIG
    ]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in paths:
        print(f"suite: {path.stem} ...", file=sys.stderr, flush=True)
        r = run_scenario(path, args.seed, args.out_dir, args)
        print(f"suite: {path.stem}: {r['events']:,} events, simulate {r['sim_rate']:,.0f} ev/s, "
              f"replay {r['replay_rate']:,.0f} ev/s", file=sys.stderr, flush=True)
        rows.append(r)
    print(table(rows))
    print(f"\n(per-scenario reports in {args.out_dir}/*.report.txt)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
