"""``distillwatch actions``: list pending suspension approvals and approve or deny one.

Approvals live where ``sinks.approvals_store`` says (see :mod:`streams.sinks.approvals`):
by default the compacted topic ``<worker.app_id>-approvals``, so this runs on any host that
reaches the broker with the workers' config (``broker.*`` and ``worker.record_secret``: a
decision is signed, and the worker ignores one that is not). ``--file`` uses an approvals
file instead. The worker that runs the suspension hook picks a decision up within
``sinks.approvals_poll_s`` and writes it, and every resulting action, to ``actions``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any

from streams.config_cmd import config_from_args
from streams.sinks.approvals import ApprovalError, Approvals, open_approvals

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
    p.add_argument("--broker", default=None, help="kafka://HOST:PORT (default: broker.url)")
    p.add_argument(
        "--file", default=None,
        help="use this approvals file instead of the approvals topic (sinks.approvals_store "
             "= \"file\" uses <worker.data_dir>/approvals.json)",
    )


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def _drive(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` to the end; in a thread of its own when the caller is already inside an
    event loop (``cli([...])`` called from a test's coroutine)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(asyncio.run(coro)))
    t.start()
    t.join()
    return out[0] if out else 1


def _print_list(recs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if args.json:
        for r in recs:
            print(json.dumps(r, sort_keys=True))
        return
    if not recs:
        print("no pending approvals" if not args.all else "no approvals")
        return
    print(f"{'ID':<22} {'STATUS':<9} {'CREATED (UTC)':<20} {'MEMBERS':>8}  CLUSTER / DETECTOR")
    for r in recs:
        print(
            f"{r['alert_id']:<22} {r['status']:<9} {_when(r.get('created_ts')):<20} "
            f"{len(r.get('members') or ()):>8}  {r.get('entity_id')} / {r.get('detector')}"
            + (f"  (by {r['decided_by']})" if r.get("decided_by") else "")
        )


async def _run(store: Approvals, args: argparse.Namespace) -> int:
    try:
        await store.start()
    except Exception as err:
        print(f"distillwatch actions: cannot open approvals ({type(err).__name__}: {err})",
              file=sys.stderr)
        return 1
    try:
        if args.verb == "list":
            _print_list(await store.list(None if args.all else "pending"), args)
            return 0
        by = args.by or getpass.getuser()
        try:
            rec = await store.decide(args.id, approve=args.verb == "approve", by=by,
                                     note=args.note)
        except ApprovalError as err:
            print(f"distillwatch actions {args.verb}: {err}", file=sys.stderr)
            return 1
        n = len(rec.get("members") or ())
        print(f"{rec['status']} {rec['alert_id']} ({n} accounts, cluster "
              f"{rec.get('entity_id')}) by {by}; the worker applies it within its approvals "
              "poll interval")
        return 0
    finally:
        await store.stop()


def run(args: argparse.Namespace) -> int:
    if args.verb != "list" and not args.id:
        print(f"distillwatch actions {args.verb}: give the approval ID", file=sys.stderr)
        return 2
    cfg = config_from_args(args)
    if args.broker:
        cfg = cfg.model_copy(update={"broker": cfg.broker.model_copy(update={"url": args.broker})})
    return _drive(_run(open_approvals(cfg, file=args.file), args))
