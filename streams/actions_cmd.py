"""``distillwatch actions``: list pending suspension approvals and approve or deny one.

Approvals live in ``<worker.data_dir>/approvals.json`` (see
:mod:`streams.sinks.approvals`); run this command where the worker's data directory is
(the worker's host, container or pod). The worker picks a decision up within
``sinks.approvals_poll_s`` and writes it, and every resulting action, to the ``actions`` topic.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time

from streams.config_cmd import config_from_args
from streams.sinks.approvals import ApprovalError, ApprovalStore, approvals_path

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "verb",
        choices=("list", "approve", "deny"),
        help="list: pending approvals (--all: every record); approve / deny ID",
    )
    p.add_argument("id", nargs="?", help="approval id (the alert id) for approve / deny")
    p.add_argument("--all", action="store_true", help="list decided records too")
    p.add_argument("--json", action="store_true", help="list as JSON lines")
    p.add_argument("--by", default=None, help="who decides (default: the login name)")
    p.add_argument("--note", default="", help="why, kept in the audit record")
    p.add_argument(
        "--file", default=None, help="approvals file (default: <worker.data_dir>/approvals.json)"
    )


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def run(args: argparse.Namespace) -> int:
    path = args.file or approvals_path(config_from_args(args).worker.data_dir)
    store = ApprovalStore(path)
    if args.verb == "list":
        recs = store.list(None if args.all else "pending")
        if args.json:
            for r in recs:
                print(json.dumps(r, sort_keys=True))
            return 0
        if not recs:
            print("no pending approvals" if not args.all else "no approvals")
            return 0
        print(f"{'ID':<22} {'STATUS':<9} {'CREATED (UTC)':<20} {'MEMBERS':>8}  CLUSTER / DETECTOR")
        for r in recs:
            print(
                f"{r['alert_id']:<22} {r['status']:<9} {_when(r.get('created_ts')):<20} "
                f"{len(r.get('members') or ()):>8}  {r.get('entity_id')} / {r.get('detector')}"
                + (f"  (by {r['decided_by']})" if r.get("decided_by") else "")
            )
        return 0
    if not args.id:
        print(f"distillwatch actions {args.verb}: give the approval ID", file=sys.stderr)
        return 2
    by = args.by or getpass.getuser()
    try:
        rec = store.decide(args.id, approve=args.verb == "approve", by=by, note=args.note)
    except ApprovalError as err:
        print(f"distillwatch actions {args.verb}: {err}", file=sys.stderr)
        return 1
    n = len(rec.get("members") or ())
    print(f"{rec['status']} {rec['alert_id']} ({n} accounts, cluster {rec.get('entity_id')}) "
          f"by {by}; the worker applies it within its approvals poll interval")
    return 0
