"""Audit records: one JSON record on the ``actions`` topic per suspension-hook decision.

Fields: ``ts`` (wall clock), ``decision`` (executed, dry_run, skipped, pending_approval,
approved, denied, failed), ``action`` (none, flag, throttle, suspend), ``reason``,
``account_id`` (None for a summary over several accounts, see ``count``), ``alert_id``,
``entity_type``, ``entity_id``, ``detector``, ``severity`` (effective), ``alert_severity``
(the detector's), ``agreeing_detectors``, ``idempotency_key``, ``rule`` (index in the
policy's rules), ``dry_run``, ``count`` and, for human decisions, ``by`` and ``note``.

>>> from streams.sinks.policy import Decision
>>> rec = audit_record({"alert_id": "a1", "entity_type": "account", "entity_id": "x",
...                     "detector": "d", "severity": "warning"},
...                    Decision("x", "flag", "dry_run", "rule 2: flag", "a1:x:flag", 2),
...                    severity="warning", detectors=("d",), dry_run=True, ts=1.0)
>>> rec["decision"], rec["action"], rec["idempotency_key"], rec["dry_run"]
('dry_run', 'flag', 'a1:x:flag', True)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from streams.sinks.policy import Decision

__all__ = ["AuditWriter", "audit_record"]

#: Writes one audit record (to the actions topic in the worker, to a list in tests).
AuditWriter = Callable[[dict[str, Any]], Awaitable[None]]


def audit_record(
    change: Mapping[str, Any],
    d: Decision,
    *,
    severity: str,
    detectors: tuple[str, ...],
    dry_run: bool,
    decision: str | None = None,
    reason: str | None = None,
    ts: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The audit record of decision ``d`` about ``change``; ``decision`` / ``reason``
    override the decision's own (e.g. ``executed`` once the API call succeeded)."""
    rec = {
        "ts": time.time() if ts is None else ts,
        "decision": decision or d.decision,
        "action": d.action,
        "reason": reason or d.reason,
        "account_id": d.account_id,
        "count": d.count,
        "alert_id": change.get("alert_id"),
        "entity_type": change.get("entity_type"),
        "entity_id": change.get("entity_id"),
        "detector": change.get("detector"),
        "severity": severity,
        "alert_severity": change.get("severity"),
        "agreeing_detectors": list(detectors),
        "idempotency_key": d.idempotency_key,
        "rule": d.rule,
        "dry_run": dry_run,
    }
    rec.update(extra)
    return rec
