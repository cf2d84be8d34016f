"""``distillwatch alerts list|show``: alerts from the alert store (``distillwatch store``).

``list [--open] [--severity S] [--detector D] [--since T] [--json]`` prints the queue;
``show ID [--members-csv FILE] [--json]`` one alert: headline, timeline of its changes,
evidence in words, the suspension decisions taken for it, and its members. ID may be a
unique prefix of at least 6 characters. Errors are one line on stderr with exit code 1.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from streams.config_cmd import config_from_args

__all__ = ["add_arguments", "parse_since", "run"]

_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``30m``, ``2h``, ``7d`` ago, an ISO time (UTC unless it says otherwise), or epoch
    seconds.

    >>> parse_since("2h", now=10_000.0)
    2800.0
    >>> parse_since("2026-01-01T00:00:00")
    1767225600.0
    """
    now = time.time() if now is None else now
    m = _REL.match(text.strip())
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since: expected 30m, 2h, 7d, an ISO time or epoch seconds, "
                         f"got {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("verb", choices=("list", "show"), help="list alerts, or show one")
    p.add_argument("id", nargs="?", help="alert id (or a unique prefix) for show")
    p.add_argument("--open", action="store_true", help="list: open alerts only")
    p.add_argument("--severity", choices=("info", "warning", "critical"))
    p.add_argument("--detector", help="list: one detector")
    p.add_argument("--since", metavar="T", help="list: updated since T (30m, 2h, 7d, ISO time)")
    p.add_argument("--members-csv", metavar="FILE", help="show: write the members to FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--store-url", default=None, help="database URL (default: store.url)")


def _fail(msg: str) -> int:
    print(f"distillwatch alerts: {msg}", file=sys.stderr)
    return 1


def write_members_csv(alert: dict[str, Any], path: str | Path) -> int:
    """Write one ``account_id,alert_id,entity_id`` row per member; the number written."""
    members = alert.get("members") or []
    with open(path, "w", newline="") as f:
        f.write(members_csv(alert))
    return len(members)


def members_csv(alert: dict[str, Any]) -> str:
    """The member list as CSV text (also the console's export).

    Member ids come from traffic: one starting with ``=``, ``+``, ``-`` or ``@`` would be a
    formula when the file is opened in a spreadsheet, so it is prefixed with a quote.

    >>> print(members_csv({"alert_id": "a", "entity_id": "c", "members": ["x", "=1+1"]}))
    account_id,alert_id,entity_id
    x,a,c
    '=1+1,a,c
    <BLANKLINE>
    """
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["account_id", "alert_id", "entity_id"])
    for m in alert.get("members") or []:
        m = str(m)
        w.writerow(["'" + m if m[:1] in ("=", "+", "-", "@", "\t", "\r") else m,
                    alert["alert_id"], alert["entity_id"]])
    return buf.getvalue()


def _list(engine: Any, args: argparse.Namespace) -> int:
    from streams.store.queries import list_alerts
    from streams.store.words import age, num

    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as err:
        return _fail(str(err))
    rows = list_alerts(engine, open_only=args.open, severity=args.severity,
                       detector=args.detector, since=since)
    if args.json:
        for r in rows:
            print(json.dumps(r, sort_keys=True, default=str))
        return 0
    if not rows:
        print("no alerts" + (" open" if args.open else "") + " match")
        return 0
    now = time.time()
    print(f"{'ID':<20}  {'STATE':<8} {'SEVERITY':<8}  {'DETECTOR':<24} {'SCORE/THR':>9} "
          f"{'MEMBERS':>7} {'HARVEST':>11} {'AGE':>7}  ENTITY")
    for r in rows:
        ratio = (r["score"] / r["threshold"]) if r.get("threshold") else None
        print(f"{r['alert_id']:<20}  {r['state']:<8} {r['severity']:<8}  {r['detector']:<24} "
              f"{num(ratio):>9} {num(r.get('member_count')) if r.get('member_count') else '-':>7}"
              f" {num(r.get('harvest_tokens')) if r.get('harvest_tokens') else '-':>11} "
              f"{age(now - r['opened_ts']):>7}  {r['entity_type']} {r['entity_id']}")
    return 0


def _show(engine: Any, args: argparse.Namespace) -> int:
    from streams.store.queries import alert_actions, find_alert, timeline
    from streams.store.words import age, evidence_lines, num, utc

    if not args.id:
        return _fail("show needs an alert ID")
    a = find_alert(engine, args.id)
    if a is None:
        return _fail(f"no alert {args.id!r} in the store (is `distillwatch store` running?)")
    changes, decisions = timeline(engine, a["alert_id"]), alert_actions(engine, a["alert_id"])
    if args.members_csv:
        try:
            n = write_members_csv(a, args.members_csv)
        except OSError as err:
            return _fail(f"cannot write {args.members_csv}: {err.strerror}")
        print(f"{n} members written to {args.members_csv}", file=sys.stderr)
    if args.json:
        print(json.dumps({"alert": a, "timeline": changes, "actions": decisions},
                         sort_keys=True, default=str))
        return 0
    end = a["resolved_ts"] or time.time()
    print(f"{a['alert_id']}  {a['severity'].upper()}  {a['detector']} on {a['entity_type']} "
          f"{a['entity_id']}")
    print(f"  {a['state']}; opened {utc(a['opened_ts'])}, "
          + (f"resolved {utc(a['resolved_ts'])}" if a["resolved_ts"] else "open for")
          + f" ({age(end - a['opened_ts'])})")
    print(f"  score {num(a['score'])} over threshold {num(a['threshold'])}"
          + (f"; {a['member_count']} members" if a.get("member_count") is not None else "")
          + (f"; harvest {num(a['harvest_tokens'])} output tokens"
             if a.get("harvest_tokens") else ""))
    if a.get("acked_by") or a.get("assignee") or a.get("false_positive"):
        print(f"  acknowledged by {a.get('acked_by') or '-'}, assigned to "
              f"{a.get('assignee') or '-'}"
              + (f"; FALSE POSITIVE ({a.get('fp_by')}: {a.get('fp_note') or ''})"
                 if a.get("false_positive") else ""))
    print("\nTimeline")
    for c in changes:
        print(f"  {utc(c['ts'])}  {c['state']:<8} {c['severity']:<8} score {num(c['score'])}"
              + (f", {c['member_count']} members" if c.get("member_count") is not None else "")
              + (f", harvest {num(c['harvest_tokens'])}" if c.get("harvest_tokens") else ""))
    print("\nEvidence")
    for line in evidence_lines(a) or ["(none recorded)"]:
        print(f"  {line}")
    print("\nDecisions")
    for d in decisions or []:
        who = f" by {d['by']}" if d.get("by") else ""
        what = f"{d['decision']} {d.get('action') or ''}".strip()
        print(f"  {utc(d['ts'])}  {what}{who}"
              + (f" ({d['count']} accounts)" if d.get("count") else "")
              + (f": {d['note']}" if d.get("note") else ""))
    if not decisions:
        print("  (none)")
    members = a.get("members") or []
    if members:
        shown = ", ".join(members[:20])
        more = f" … and {len(members) - 20} more (--members-csv FILE)" if len(members) > 20 else ""
        print(f"\nMembers ({len(members)})\n  {shown}{more}")
    return 0


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from streams.store.cli import store_url
    from streams.store.db import open_store

    cfg = config_from_args(args)
    try:
        engine = open_store(args.store_url or store_url(cfg))
        return _list(engine, args) if args.verb == "list" else _show(engine, args)
    except SQLAlchemyError as err:
        return _fail(f"cannot read the store: {type(err).__name__}: {str(err).splitlines()[0]}")
