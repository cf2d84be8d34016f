"""Fan alert changes out to the sink runners without ever waiting on a sink.

:meth:`Dispatcher.submit` drops redelivered changes, updates the agreement tracker, computes
the effective severity and links, and offers the envelope to every runner's bounded queue;
a full queue sends the envelope to the dead-letter writer at once instead of waiting.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from streams.logsafe import safe
from streams.sinks.agreement import Agreement
from streams.sinks.base import SinkRunner, dlq_record
from streams.sinks.envelope import Envelope, delivery_id
from streams.sinks.metrics import SinkMetrics
from streams.sinks.policy import effective_severity
from streams.sinks.suspension import SuspensionSink

__all__ = ["REQUIRED_FIELDS", "Dispatcher"]

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("alert_id", "state", "entity_type", "entity_id", "detector", "severity")
_SEEN = 50_000

#: Writes one alerts-dlq record.
DlqWriter = Callable[[dict[str, Any]], Awaitable[None]]


class Dispatcher:
    """Alert changes in, envelopes out to every sink runner.

    Parameters
    ----------
    runners
        One runner per destination (Slack, each webhook URL, the suspension hook).
    dlq
        Writes alerts-dlq records.
    metrics
        Sink metrics.
    agreement
        Agreement tracker, shared with the suspension sink.
    min_agreeing
        Independent detectors that raise the severity one level.
    runbook_url, grafana_url
        Link bases (``<runbook_url>#<detector>``).
    budget_runbook_url
        Runbook of the "action budget exceeded" alert.
    """

    def __init__(
        self,
        runners: list[SinkRunner],
        *,
        dlq: DlqWriter,
        metrics: SinkMetrics,
        agreement: Agreement | None = None,
        min_agreeing: int = 2,
        runbook_url: str | None = None,
        grafana_url: str = "http://localhost:3000/d/distillwatch-overview/distillwatch",
        budget_runbook_url: str = "docs/delivery.md#action-budget-exceeded",
    ) -> None:
        self.runners = runners
        self.dlq = dlq
        self.metrics = metrics
        self.agreement = agreement or Agreement()
        self.min_agreeing = min_agreeing
        self.runbook_url = runbook_url
        self.grafana_url = grafana_url
        self.budget_runbook_url = budget_runbook_url
        self._seen: OrderedDict[str, None] = OrderedDict()
        for r in runners:
            r.dead_letter = self._dead_letter

    def add_runner(self, runner: SinkRunner) -> None:
        runner.dead_letter = self._dead_letter
        self.runners.append(runner)

    @property
    def suspension(self) -> SinkRunner | None:
        return next((r for r in self.runners if isinstance(r.sink, SuspensionSink)), None)

    async def start(self) -> None:
        for r in self.runners:
            await r.start()

    async def stop(self, timeout: float = 5.0) -> int:
        """Drain for up to ``timeout`` seconds; return how many envelopes went to the DLQ."""
        left = 0
        for r in self.runners:
            left += await r.stop(timeout)
        return left

    async def join(self) -> None:
        """Wait until every queue is empty (tests)."""
        for r in self.runners:
            await r.join()

    async def _dead_letter(
        self, sink: str, env: Envelope, reason: str, error: str, attempts: int
    ) -> None:
        self.metrics.dead_lettered.labels(sink, reason).inc()
        try:
            await self.dlq(dlq_record(sink, env, reason, error, attempts))
        except Exception:
            # Last resort: the record is lost, but loudly (alert id only, never the body).
            log.exception("could not write alert %s to alerts-dlq", safe(env.alert_id))

    def envelope(self, change: Mapping[str, Any]) -> Envelope:
        dets = self.agreement.for_change(change)
        n = self.agreement.independent(dets)
        sev = effective_severity(str(change["severity"]), n, self.min_agreeing)
        return Envelope.build(
            change,
            detectors=dets,
            severity=sev,
            runbook_base=self.runbook_url,
            grafana_url=self.grafana_url,
        )

    async def submit(self, change: Mapping[str, Any]) -> Envelope | None:
        """Offer one alert change to every sink; never waits on a sink. Returns its envelope
        (None when it was a redelivered duplicate or invalid)."""
        missing = [f for f in REQUIRED_FIELDS if f not in change]
        if missing:
            log.warning("alert change without %s sent to alerts-dlq", ", ".join(missing))
            await self.dlq(
                {"sink": None, "reason": "invalid_alert", "error": f"missing {missing}",
                 "alert": dict(change)}
            )
            return None
        did = delivery_id(change)
        if did in self._seen:
            log.debug("alert %s change %s already delivered", safe(change["alert_id"]), did)
            return None
        self._seen[did] = None
        if len(self._seen) > _SEEN:
            self._seen.popitem(last=False)
        self.agreement.observe(change)
        env = self.envelope(change)
        if self.suspension is not None and change["state"] != "resolved":
            # Agreement as of this change, so the hook's decision does not depend on how far
            # ahead of its queue the dispatcher has read.
            ag = self.agreement
            targets = change.get("members") or () if change["entity_type"] == "cluster" else (
                change["entity_id"],
            )
            counts = {str(a): ag.independent(ag.for_account(str(a))) for a in targets}
            env = replace(env, extra={"agreeing": counts})
        self._offer(env, self.runners)
        return env

    def _offer(self, env: Envelope, runners: list[SinkRunner]) -> None:
        for r in runners:
            if not r.offer(env):
                r.reject(env, "queue_full")

    async def raise_system_alert(self, change: dict[str, Any]) -> None:
        """Deliver an alert of distillwatch itself (e.g. the action budget) to the
        notification sinks, not to the suspension hook."""
        env = Envelope.build(
            change, detectors=(str(change["detector"]),), severity=str(change["severity"]),
            grafana_url=self.grafana_url, system=True,
        )
        env = replace(env, runbook_url=self.budget_runbook_url)
        self._offer(env, [r for r in self.runners if not isinstance(r.sink, SuspensionSink)])

    async def poll_approvals(self) -> int:
        """Queue approvals decided with the CLI; return how many were queued."""
        runner = self.suspension
        if runner is None:
            return 0
        assert isinstance(runner.sink, SuspensionSink)
        envs = await runner.sink.poll_approvals()
        for env in envs:
            self._offer(env, [runner])
        return len(envs)
