"""The suspension hook: policy decisions, account-API calls and the audit trail.

Every alert change goes through :class:`~streams.sinks.policy.PolicyEngine`; every decision
(taken, skipped, dry-run, pending approval) is written to the audit writer (the ``actions``
topic) with its reason; decisions to execute call the account API and are audited as
``executed`` (or ``failed`` once the runner gives up). The sink is retried like any other:
an alert's decisions are taken once and only the calls still outstanding are repeated.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from streams.sinks.account_api import AccountApi
from streams.sinks.agreement import Agreement
from streams.sinks.approvals import ApprovalStore
from streams.sinks.audit import AuditWriter, audit_record
from streams.sinks.base import Sink
from streams.sinks.envelope import Envelope
from streams.sinks.metrics import SinkMetrics
from streams.sinks.policy import Decision, PolicyEngine

__all__ = ["SuspensionSink", "budget_alert"]

log = logging.getLogger(__name__)

#: Receives the critical "action budget exceeded" alert (to Slack and webhooks).
AlertRaiser = Callable[[dict[str, Any]], Awaitable[None]]


def budget_alert(
    *, now: float, max_actions: int, interval_s: float, dry_run: bool
) -> dict[str, Any]:
    """The alert change raised when the circuit breaker trips (id unique per trip)."""
    aid = "budget-" + hashlib.sha1(str(int(now)).encode(), usedforsecurity=False).hexdigest()[:13]
    mode = " (dry run: nothing was being executed)" if dry_run else ""
    return {
        "alert_id": aid,
        "state": "opened",
        "entity_type": "system",
        "entity_id": "suspension-hook",
        "detector": "action_budget",
        "severity": "critical",
        "ts": now,
        "opened_ts": now,
        "window_start": now - interval_s,
        "window_end": now,
        "score": float(max_actions),
        "threshold": float(max_actions),
        "evidence": {
            "message": f"action budget exceeded: {max_actions} throttles/suspensions within "
            f"{interval_s:.0f}s; the hook stops acting for {interval_s:.0f}s{mode}",
            "features": {"actions": max_actions},
            "baseline": {},
            "signals": [],
            "dry_run": dry_run,
        },
    }


class SuspensionSink(Sink):
    """Apply the policy to alerts and act through the account API.

    Parameters
    ----------
    engine
        Policy engine (its policy's ``dry_run`` decides whether anything is executed).
    agreement
        Shared agreement tracker (the dispatcher feeds it); used when an envelope carries no
        ``extra["agreeing"]`` snapshot.
    audit
        Writes audit records.
    api
        Account API client; None only with a dry-run policy.
    store
        Approval store for large cluster suspensions.
    raise_alert
        Receives the "action budget exceeded" alert change.
    metrics
        Sink metrics (actions counter, breaker gauge).
    """

    name = "suspension"

    def __init__(
        self,
        engine: PolicyEngine,
        agreement: Agreement,
        *,
        audit: AuditWriter,
        api: AccountApi | None = None,
        store: ApprovalStore | None = None,
        raise_alert: AlertRaiser | None = None,
        metrics: SinkMetrics | None = None,
    ) -> None:
        if api is None and not engine.policy.dry_run:
            raise ValueError("suspension: dry_run = false needs sinks.account_api_url")
        self.engine = engine
        self.agreement = agreement
        self.audit = audit
        self.api = api
        self.store = store
        self.raise_alert = raise_alert
        self.metrics = metrics
        self._plans: dict[str, list[Decision]] = {}
        self._queued_approvals: set[str] = set()

    @property
    def dry_run(self) -> bool:
        return self.engine.policy.dry_run

    async def setup(self) -> None:
        if self.api is not None:
            await self.api.setup()
        if self.store is not None:
            self.engine.mark_pending(self.store.pending_ids())

    async def close(self) -> None:
        if self.api is not None:
            await self.api.close()

    async def _write(self, env: Envelope, d: Decision, **kw: Any) -> None:
        rec = audit_record(
            env.change, d, severity=env.severity, detectors=env.detectors, dry_run=self.dry_run,
            **kw,
        )
        if self.metrics is not None:
            self.metrics.actions.labels(rec["action"], rec["decision"]).inc()
        await self.audit(rec)

    async def send(self, env: Envelope) -> int:
        if env.system:
            return 0
        plan = self._plans.get(env.delivery_id)
        if plan is None:
            plan = self._plans[env.delivery_id] = await self._plan(env)
        calls = 0
        while plan:
            d = plan[0]
            assert self.api is not None
            await self.api.act(d, env.change, env.severity)
            calls += 1
            plan.pop(0)
            await self._write(env, d, decision="executed")
        del self._plans[env.delivery_id]
        self._finish_approval(env, "executed")
        return calls

    async def on_dead(self, env: Envelope, reason: str) -> None:
        for d in self._plans.pop(env.delivery_id, []):
            if d.idempotency_key is not None:
                self.engine.forget(d.idempotency_key)
            await self._write(env, d, decision="failed", reason=f"{reason}: {d.reason}")
        self._finish_approval(env, f"failed ({reason})")

    def _finish_approval(self, env: Envelope, result: str) -> None:
        rec = env.extra.get("approval")
        if rec is not None and self.store is not None:
            self.store.mark_processed(rec["alert_id"], result)
            self._queued_approvals.discard(rec["alert_id"])

    async def _plan(self, env: Envelope) -> list[Decision]:
        approval = env.extra.get("approval")
        if approval is not None:
            return await self._plan_approved(env, approval)
        ag = self.agreement
        snapshot = env.extra.get("agreeing") or {}

        def agreeing(acct: str) -> int:
            n = snapshot.get(acct)
            return ag.independent(ag.for_account(acct)) if n is None else int(n)

        verdict = self.engine.decide(env.change, agreeing=agreeing, severity=env.severity)
        plan = []
        for d in verdict.decisions:
            if d.decision == "execute":
                plan.append(d)
            else:
                await self._write(env, d)
        if verdict.pending_members is not None:
            if self.store is None:
                log.warning("alert %s needs approval but no approval store", env.alert_id)
            else:
                self.store.add_pending(
                    {
                        "alert_id": env.alert_id,
                        "entity_id": env.entity_id,
                        "detector": env.detector,
                        "severity": env.severity,
                        "agreeing_detectors": list(env.detectors),
                        "member_count": env.change.get("member_count"),
                        "members": verdict.pending_members,
                        "action": "suspend",
                        "change": {k: v for k, v in env.change.items() if k != "members"},
                        "dashboard_url": env.dashboard_url,
                        "runbook_url": env.runbook_url,
                    }
                )
        now = self.engine.clock()
        if self.metrics is not None:
            self.metrics.breaker_open.set(1 if self.engine.breaker.is_open(now) else 0)
        if verdict.budget_exceeded:
            b = self.engine.policy.breaker
            log.error("suspension hook: action budget exceeded (%s per %ss)", b.max_actions,
                      b.interval_s)
            if self.raise_alert is not None:
                await self.raise_alert(
                    budget_alert(now=now, max_actions=b.max_actions, interval_s=b.interval_s,
                                 dry_run=self.dry_run)
                )
        return plan

    async def _plan_approved(self, env: Envelope, rec: dict[str, Any]) -> list[Decision]:
        members = [str(m) for m in rec.get("members") or ()]
        summary = Decision(None, "suspend", "skipped", "", rec["alert_id"], count=len(members))
        await self._write(
            env, summary, decision="approved", reason=f"approved by {rec.get('decided_by')}",
            by=rec.get("decided_by"), note=rec.get("note"),
        )
        plan = []
        for d in self.engine.decide_approved(rec["alert_id"], env.change, members):
            if d.decision == "execute":
                plan.append(d)
            else:
                await self._write(env, d)
        return plan

    async def poll_approvals(self) -> list[Envelope]:
        """Pick up approvals decided with the CLI: write denials to the audit trail, and
        return the approved ones as envelopes for the suspension queue."""
        if self.store is None:
            return []
        out = []
        for rec in self.store.take_decided():
            aid = rec["alert_id"]
            if aid in self._queued_approvals:
                continue
            change = {**rec.get("change", {}), "alert_id": aid, "members": rec.get("members")}
            env = Envelope(
                change=change,
                delivery_id=f"approval:{aid}",
                severity=str(rec.get("severity", "critical")),
                detectors=tuple(rec.get("agreeing_detectors") or ()),
                runbook_url=str(rec.get("runbook_url", "")),
                dashboard_url=str(rec.get("dashboard_url", "")),
            )
            if rec["status"] == "denied":
                self.engine.close_pending(aid)
                d = Decision(None, "suspend", "skipped", "", aid,
                             count=len(rec.get("members") or ()))
                await self._write(
                    env, d, decision="denied", reason=f"denied by {rec.get('decided_by')}",
                    by=rec.get("decided_by"), note=rec.get("note"),
                )
                self.store.mark_processed(aid, "denied")
                continue
            self._queued_approvals.add(aid)
            out.append(replace(env, extra={"approval": rec}))
        return out
