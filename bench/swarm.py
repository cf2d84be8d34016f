"""Swarm and lockstep detectors, offline, on the coordination scenarios and their look-alikes.

    python -m bench.swarm                          # every scenario below, seed 1
    python -m bench.swarm --seeds 1 2 3 --combined  # also the shipped Monitor's alerts
    python -m bench.swarm scenarios/campaign_swarm_day.toml

For each scenario: simulate, parse every event as the worker would (``parse_event``),
close one-minute windows, feed each account-window to :class:`~detectors.cohort.
CohortDetector` and :class:`~detectors.coactivity.CoactivityDetector`, fold their findings
through the :class:`~detectors.alerts.AlertBook` and score with ``evaluation.score``: per
campaign the share of its accounts flagged and the delay from its start to the first flag;
per benign population the accounts flagged and false alerts. ``--combined`` adds the
shipped :class:`~detectors.pipeline.Monitor` on the same events, which is what wiring the
two detectors into the pipeline would give.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from detectors.alerts import AlertBook
from detectors.coactivity import CoactivityDetector
from detectors.cohort import CohortDetector, account_view
from detectors.events import parse_event
from detectors.pipeline import Monitor
from detectors.windows import Windower
from evaluation.score import Labels, Score, score
from simulator.generate import generate
from simulator.scenario import load_scenario
from simulator.writer import label_records, write_events

__all__ = ["SCENARIOS", "main", "run"]

ROOT = Path(__file__).resolve().parents[1] / "scenarios"
SCENARIOS = [
    "campaign_swarm_day", "campaign_swarm_week", "campaign_swarm_4w",
    "campaign_lockstep_day", "campaign_lockstep_2w", "campaign_lockstep_1k",
    "trap_class_cohort", "trap_sso_onboarding", "trap_cron_fleet", "trap_app_template",
    "trap_research_org", "trap_popular_tool", "trap_launch_day",
]


def run(path: Path, seed: int, combined: bool = False) -> tuple[Score, dict[str, Any]]:
    """Score the two detectors (plus the Monitor with ``combined``) on one scenario."""
    sim = generate(load_scenario(path), seed)
    buf = io.BytesIO()
    write_events(sim, buf)
    labels = Labels.from_records(label_records(sim))
    now = sim.t_end
    del sim
    cohort, coact = CohortDetector(), CoactivityDetector()
    book = AlertBook(60.0, 3)
    win = Windower(60.0, 0.0)
    mon = Monitor() if combined else None
    changes: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    n = 0

    def close(wm: float) -> None:
        for closed in win.close_until(wm):
            for aid, acc in closed.accounts.items():
                x = account_view(aid, acc, closed.start)
                cohort.learn_one(x)
                coact.learn_one(x)
            found = cohort.end_window(closed.start, closed.end)
            found += coact.end_window(closed.start, closed.end)
            for f in found:
                changes.extend(book.observe(f))
            changes.extend(book.tick(closed.end))

    for line in buf.getvalue().splitlines():
        ev = parse_event(line, now=now)
        n += 1
        win.add(ev)
        if mon is not None:
            changes.extend(mon.add(ev))
        if ev.ts >= win.next_close:
            close(ev.ts)
    close(win.watermark + 120.0)
    changes.extend(book.refresh(win.watermark))
    changes.extend(book.tick(win.watermark + 600.0))
    if mon is not None:
        changes.extend(mon.flush())
    secs = time.perf_counter() - t0
    return score(labels, changes), {"events": n, "seconds": secs, "labels": labels,
                                    "state": {**cohort.tracked, **coact.tracked}}


def _delay(s: float | None) -> str:
    if s is None:
        return "missed"
    return f"{s / 60:.0f}m" if abs(s) < 3600 else f"{s / 3600:.1f}h"


def row(name: str, seed: int, sc: Score, info: dict[str, Any]) -> str:
    labels: Labels = info["labels"]
    camp = "; ".join(f"{c.kind} {c.accounts}: {100 * c.share_flagged:.0f}% "
                     f"{_delay(c.delay_s)}" for c in sc.campaigns) or "-"
    pops = Counter(labels.population.values())
    traps = [p for p in sc.populations if p.population.startswith("trap:")]
    benign_flags = "; ".join(f"{p.population} {p.flagged}/{pops[p.population]}"
                             for p in traps) or "-"
    prec = "-" if sc.precision is None else f"{sc.precision:.2f}"
    return (f"| {name} | {seed} | {info['events']:,} | {camp} | {prec} | "
            f"{sc.flagged_benign} | {benign_flags} | {sc.false_alerts} | "
            f"{sc.critical_false_alerts} | {sc.false_alerts_per_1k_day:.2f} | "
            f"{info['seconds']:.0f}s |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenarios", nargs="*", type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--combined", action="store_true",
                   help="add the shipped Monitor's alerts (what wiring would give)")
    args = p.parse_args(argv)
    paths = args.scenarios or [ROOT / f"{s}.toml" for s in SCENARIOS]
    print("| scenario | seed | events | campaign: flagged, delay | precision | benign flagged "
          "| look-alike flagged | false alerts | crit FA | FA/1k/day | time |")
    print("|" + "---|" * 11)
    for path in paths:
        for seed in args.seeds:
            sc, info = run(path, seed, args.combined)
            print(row(path.stem, seed, sc, info), flush=True)
            by_det = ", ".join(f"{d.detector}: {d.alerts} alerts, {d.false_alerts} false"
                               for d in sc.detectors)
            print(f"  {path.stem} seed {seed}: {by_det or 'no alerts'}; state {info['state']}",
                  file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
