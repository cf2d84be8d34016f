"""The suspension hook: policy decisions, account-API calls and the audit trail.

Every alert change goes through :class:`~streams.sinks.policy.PolicyEngine`; every decision
(taken, skipped, dry-run, pending approval) is written to the audit writer (the ``actions``
topic) with its reason; decisions to execute call the account API and are audited as
``executed`` (or ``failed`` once the runner gives up). The sink is retried like any other:
an alert's decisions are taken once and only the calls still outstanding are repeated.

With a ledger (:mod:`streams.sinks.ledger`, the worker always has one) the engine's memory
is shared and durable: before deciding an alert change the sink reads every ledger record
written since (by any worker, or by this one before a restart), and it writes the new
decisions to the ledger before any audit record or API call. A redelivered change that the
ledger shows as decided is dropped without a record.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from streams.logsafe import safe
from streams.sinks.account_api import AccountApi
from streams.sinks.agreement import Agreement
from streams.sinks.approvals import Approvals
from streams.sinks.audit import AuditWriter, audit_record
from streams.sinks.base import Sink
from streams.sinks.envelope import Envelope
from streams.sinks.errors import DeliveryError
from streams.sinks.ledger import KafkaLedger, LedgerRecord
from streams.sinks.metrics import SinkMetrics
from streams.sinks.policy import Decision, PolicyEngine

__all__ = ["SuspensionSink", "budget_alert"]

log = logging.getLogger(__name__)

_DECIDED = 200_000  # delivery ids remembered from the ledger

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


@dataclass(slots=True)
class _Plan:
    """What one envelope still has to do, in order: audit records, the approval request,
    the budget alert, then the API calls."""

    records: list[tuple[Decision, dict[str, Any]]] = field(default_factory=list)
    pending: dict[str, Any] | None = None
    alert: dict[str, Any] | None = None
    execs: list[Decision] = field(default_factory=list)
    #: Ledger records still to write; written before anything else of the plan happens.
    ledger: list[LedgerRecord] = field(default_factory=list)
    called: bool = False  # the API call of execs[0] succeeded; its audit record is due


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
        Approvals backend for large cluster suspensions (:mod:`streams.sinks.approvals`);
        started and stopped with the sink.
    raise_alert
        Receives the "action budget exceeded" alert change.
    metrics
        Sink metrics (actions counter, breaker gauge).
    ledger
        Shared, durable decisions (budget and idempotency); None keeps them in this process
        only (tests without Kafka).
    """

    name = "suspension"

    def __init__(
        self,
        engine: PolicyEngine,
        agreement: Agreement,
        *,
        audit: AuditWriter,
        api: AccountApi | None = None,
        store: Approvals | None = None,
        raise_alert: AlertRaiser | None = None,
        metrics: SinkMetrics | None = None,
        ledger: KafkaLedger | None = None,
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
        self._plans: dict[str, _Plan] = {}
        self._queued_approvals: set[str] = set()
        self.ledger = ledger
        self._decided: OrderedDict[str, None] = OrderedDict()
        self._ready = False  # setup() done: the approvals backend and ledger are open

    @property
    def dry_run(self) -> bool:
        return self.engine.policy.dry_run

    async def setup(self) -> None:
        if self.api is not None:
            await self.api.setup()
        if self.store is not None:
            await self.store.start()
            self.engine.mark_pending(await self.store.pending_ids())
        if self.ledger is not None:
            await self.ledger.start()
            n = await self._sync()
            log.info("suspension ledger %s: %d records restored", self.ledger.topic, n)
        self._ready = True

    async def close(self) -> None:
        if self.api is not None:
            await self.api.close()
        if self.ledger is not None:
            await self.ledger.stop()
        if self.store is not None:
            await self.store.stop()

    async def _sync(self) -> int:
        """Fold in every ledger record written since the last sync (any worker's)."""
        assert self.ledger is not None
        try:
            records = await self.ledger.sync()
        except Exception as err:
            raise DeliveryError(f"ledger read failed: {type(err).__name__}",
                                retriable=True) from err
        for key, value in records:
            if key.startswith("d:"):
                if value is not None:
                    self._decided[key[2:]] = None
                    if len(self._decided) > _DECIDED:
                        self._decided.popitem(last=False)
            else:
                self.engine.apply(key, value)
        return len(records)

    async def _append(self, records: list[LedgerRecord]) -> None:
        assert self.ledger is not None
        try:
            await self.ledger.append(records)
        except Exception as err:
            # Nothing of the plan has happened yet: retry (the plan resumes here).
            raise DeliveryError(f"ledger write failed: {type(err).__name__}",
                                retriable=True) from err

    async def _write(self, env: Envelope, d: Decision, **kw: Any) -> None:
        rec = audit_record(
            env.change, d, severity=env.severity, detectors=env.detectors, dry_run=self.dry_run,
            **kw,
        )
        try:
            await self.audit(rec)
        except Exception as err:
            # The trail must be complete: retry (the plan resumes at this record).
            raise DeliveryError(
                f"audit write failed: {type(err).__name__}", retriable=True
            ) from err
        if self.metrics is not None:
            self.metrics.actions.labels(rec["action"], rec["decision"]).inc()

    async def send(self, env: Envelope) -> int:
        if env.system:
            return 0
        # Decide once; then work through the plan step by step, so a retry after any failed
        # step (audit write, approval file, API call) resumes instead of deciding again.
        plan = self._plans.get(env.delivery_id)
        if plan is None:
            if self.ledger is not None:
                await self._sync()
                if env.delivery_id in self._decided:
                    # Decided before (a redelivery after a restart, or by another worker).
                    log.info("alert %s change %s already decided (ledger)",
                             safe(env.alert_id), env.delivery_id)
                    await self._finish_approval(env, "executed")
                    return 0
            plan = self._plans[env.delivery_id] = self._decide(env)
            journal = self.engine.pop_journal()
            if self.ledger is not None:
                plan.ledger = [*journal, (f"d:{env.delivery_id}", {"ts": time.time()})]
        if plan.ledger:
            await self._append(plan.ledger)
            plan.ledger = []
        while plan.records:
            d, kw = plan.records[0]
            await self._write(env, d, **kw)
            plan.records.pop(0)
        if plan.pending is not None:
            if self.store is not None:
                try:
                    await self.store.add_pending(plan.pending)
                except Exception as err:
                    # The request must reach the store: retry (the plan resumes here).
                    raise DeliveryError(f"approval write failed: {type(err).__name__}",
                                        retriable=True) from err
            plan.pending = None
        if plan.alert is not None:
            if self.raise_alert is not None:
                await self.raise_alert(plan.alert)
            plan.alert = None
        calls = 0
        while plan.execs:
            d = plan.execs[0]
            if not plan.called:
                assert self.api is not None
                await self.api.act(d, env.change, env.severity)
                calls += 1
                plan.called = True
            await self._write(env, d, decision="executed")
            plan.execs.pop(0)
            plan.called = False
        del self._plans[env.delivery_id]
        await self._finish_approval(env, "executed")
        return calls

    async def on_dead(self, env: Envelope, reason: str) -> None:
        plan = self._plans.pop(env.delivery_id, None)
        execs = list(plan.execs) if plan is not None else []
        records: list[tuple[Decision, dict[str, Any]]] = []
        if plan is not None and plan.called and execs:
            # Done at the API; only its record was missing.
            records.append((execs.pop(0), {"decision": "executed"}))
        for d in execs:
            if d.idempotency_key is not None:
                self.engine.forget(d.idempotency_key)
            records.append((d, {"decision": "failed", "reason": f"{reason}: {d.reason}"}))
        journal = self.engine.pop_journal()
        if plan is not None and plan.ledger:
            # Its decisions never reached the ledger: nor will the rest of the plan.
            journal = []
        if journal and self.ledger is not None:
            try:
                await self._append(journal)
            except DeliveryError:
                log.error("alert %s: ledger records lost (%d); the keys may be retried only "
                          "by this process", safe(env.alert_id), len(journal))
        for d, kw in records:
            try:
                await self._write(env, d, **kw)
            except DeliveryError:
                log.error("alert %s: audit record for %s lost (%s)", safe(env.alert_id),
                          safe(d.idempotency_key), kw["decision"])
        await self._finish_approval(env, f"failed ({reason})")

    async def _finish_approval(self, env: Envelope, result: str) -> None:
        rec = env.extra.get("approval")
        if rec is not None and self.store is not None:
            try:
                await self.store.mark_processed(rec["alert_id"], result)
            except Exception as err:
                # Not lost: the next poll queues it again, and the ledger drops the repeat
                # as decided, which marks it processed then.
                log.error("approval %s: processed mark not written (%s)",
                          safe(rec["alert_id"]), type(err).__name__)
            self._queued_approvals.discard(rec["alert_id"])

    def _decide(self, env: Envelope) -> _Plan:
        approval = env.extra.get("approval")
        if approval is not None:
            return self._decide_approved(env, approval)
        ag = self.agreement
        snapshot = env.extra.get("agreeing") or {}

        def agreeing(acct: str) -> int:
            n = snapshot.get(acct)
            return ag.independent(ag.for_account(acct)) if n is None else int(n)

        verdict = self.engine.decide(env.change, agreeing=agreeing, severity=env.severity)
        plan = _Plan()
        for d in verdict.decisions:
            if d.decision == "execute":
                plan.execs.append(d)
            else:
                plan.records.append((d, {}))
        if verdict.pending_members is not None:
            if self.store is None:
                log.warning("alert %s needs approval but no approval store",
                            safe(env.alert_id))
            plan.pending = {
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
        now = self.engine.clock()
        if self.metrics is not None:
            self.metrics.breaker_open.set(1 if self.engine.breaker.is_open(now) else 0)
        if verdict.budget_exceeded:
            b = self.engine.policy.breaker
            log.error("suspension hook: action budget exceeded (%s per %ss)", b.max_actions,
                      b.interval_s)
            plan.alert = budget_alert(now=now, max_actions=b.max_actions,
                                      interval_s=b.interval_s, dry_run=self.dry_run)
        return plan

    def _decide_approved(self, env: Envelope, rec: dict[str, Any]) -> _Plan:
        members = [str(m) for m in rec.get("members") or ()]
        summary = Decision(None, "suspend", "skipped", "", rec["alert_id"], count=len(members))
        plan = _Plan()
        plan.records.append((summary, {
            "decision": "approved", "reason": f"approved by {rec.get('decided_by')}",
            "by": rec.get("decided_by"), "note": rec.get("note"),
        }))
        for d in self.engine.decide_approved(rec["alert_id"], env.change, members):
            if d.decision == "execute":
                plan.execs.append(d)
            else:
                plan.records.append((d, {}))
        return plan

    async def poll_approvals(self) -> list[Envelope]:
        """Pick up approvals decided with the CLI: write denials to the audit trail, and
        return the approved ones as envelopes for the suspension queue."""
        if self.store is None or not self._ready:
            return []  # the worker's timer may fire before the sink task has set up
        out = []
        for rec in await self.store.take_decided():
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
                await self.store.mark_processed(aid, "denied")
                continue
            self._queued_approvals.add(aid)
            out.append(replace(env, extra={"approval": rec}))
        return out
