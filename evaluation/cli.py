"""``distillwatch evaluate --labels L --alerts A [--events E] [--json]``: score alerts.

Prints account-level precision and recall, false alerts per 1,000 benign accounts per
simulated day, per campaign detection and delay, a per-detector and per-population
breakdown, and — with ``--events`` — the static per-account rate limit tuned to the same
false-alert budget, side by side.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", metavar="LABELS.jsonl",
                   help="ground truth from `distillwatch simulate --labels` (required unless "
                   "--verdicts is given)")
    p.add_argument("--alerts", required=True, metavar="ALERTS.jsonl",
                   help="alert state changes from `distillwatch replay` (or the alerts topic)")
    p.add_argument("--events", metavar="EVENTS.jsonl",
                   help="the event file, to score the static rate-limit baseline beside ours")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--verdicts", metavar="FILE|topic",
                   help="on-call verdicts: false positives marked in the console, from the "
                   "labels topic ('topic') or a JSON-lines file of its records")
    p.add_argument("--force", action="store_true",
                   help="score even when the alerts do not look like the labels' scenario")


def _verdicts(args: argparse.Namespace) -> int:
    """Score alerts against the console's false-positive verdicts."""
    from evaluation.score import read_jsonl
    from evaluation.verdicts import format_verdicts, read_verdict_topic, verdict_report

    try:
        alerts = read_jsonl(args.alerts)
        if args.verdicts == "topic":
            from streams.config_cmd import config_from_args

            verdicts = read_verdict_topic(config_from_args(args))
        else:
            verdicts = read_jsonl(args.verdicts)
    except (OSError, ValueError) as err:
        print(f"distillwatch evaluate: {err}", file=sys.stderr)
        return 2
    report = verdict_report(alerts, verdicts)
    if args.json:
        print(json.dumps({"verdicts": len(verdicts), "by_detector": report}, indent=2))
    else:
        print(format_verdicts(report, len(verdicts)))
    return 0


def run(args: argparse.Namespace) -> int:
    from evaluation.baseline import rate_limit_score
    from evaluation.report import format_report
    from evaluation.score import Labels, read_jsonl, score

    if args.verdicts:
        return _verdicts(args)
    if not args.labels:
        print("distillwatch evaluate: give --labels (or --verdicts)", file=sys.stderr)
        return 2
    try:
        labels = Labels.read(args.labels)
        alerts = read_jsonl(args.alerts)
    except (OSError, ValueError, KeyError) as err:
        print(f"distillwatch evaluate: {err}", file=sys.stderr)
        return 2
    from evaluation.match import mismatch

    why = mismatch(labels, alerts)
    if why and not args.force:
        print(f"distillwatch evaluate: these alerts are not from this scenario: {why} "
              "(--force scores them anyway)", file=sys.stderr)
        return 2
    if why:
        print(f"WARNING: scoring alerts that do not match the labels: {why}; the numbers "
              "below are meaningless", file=sys.stderr)
    ours = score(labels, alerts)
    baseline = None
    limit = None
    if args.events:
        try:
            limit, baseline = rate_limit_score(labels, args.events, ours.false_alerts)
        except OSError as err:
            print(f"distillwatch evaluate: {err}", file=sys.stderr)
            return 2
    if args.json:
        out = {"scenario": labels.name, "days": labels.days, "distillwatch": ours.to_dict()}
        if baseline is not None:
            out["rate_limit"] = {"requests_per_hour_limit": limit, **baseline.to_dict()}
        print(json.dumps(out, indent=2))
    else:
        print(format_report(labels, ours, baseline))
    return 0
