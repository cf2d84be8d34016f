"""Alert delivery in the worker: a Faust agent reads the ``alerts`` topic and feeds the sinks.

:func:`install_delivery` adds to an app:

- agent ``deliver_alerts`` on ``alerts``: verify the record signature, decode, validate and
  :meth:`~streams.sinks.dispatch.Dispatcher.submit` (:class:`~streams.sinks.intake.AlertIntake`;
  never waits on a sink: each sink has a bounded queue and its own task). Every record it
  cannot handle goes to ``alerts-dlq`` with a reason; a DLQ write is retried until it lands
  (:class:`~streams.sinks.dead_letter.DeadLetterWriter`), so no record is passed silently;
- a service that starts the sink tasks and, at shutdown, drains them for
  ``sinks.drain_timeout_s`` (what is left goes to ``alerts-dlq``);
- timer ``pick_up_approvals``: approvals decided with ``distillwatch actions`` or the console
  (on the worker that holds the ``alerts`` partition, which runs the hook).

Detection never waits on delivery: it runs in other agents, on other topics; this agent only
moves alert changes into in-memory queues. Deliveries a sink gives up on go to
``alerts-dlq``; every suspension-hook decision goes to ``actions``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.types import TP
from mode import Service
from prometheus_client import CollectorRegistry

from streams.config import Config
from streams.integrity import RecordSigner, signer_for
from streams.kafka_security import client_kwargs
from streams.metrics import RecordMetrics
from streams.sinks.account_api import AccountApi
from streams.sinks.agreement import Agreement
from streams.sinks.approvals import Approvals, FileApprovals, approvals_path, open_approvals
from streams.sinks.audit import AuditWriter
from streams.sinks.base import RetryPolicy, SinkRunner
from streams.sinks.dead_letter import DeadLetterWriter
from streams.sinks.dispatch import Dispatcher, DlqWriter
from streams.sinks.intake import AlertIntake
from streams.sinks.ledger import KafkaLedger, ledger_topic
from streams.sinks.metrics import SinkMetrics
from streams.sinks.policy import PolicyEngine, load_policy
from streams.sinks.slack import SlackSink
from streams.sinks.suspension import SuspensionSink
from streams.sinks.webhook import WebhookSink

__all__ = ["build_dispatcher", "install_delivery"]

log = logging.getLogger(__name__)


def build_dispatcher(
    cfg: Config,
    registry: CollectorRegistry,
    *,
    audit: AuditWriter,
    dlq: DlqWriter,
    metrics: SinkMetrics | None = None,
    ledger: KafkaLedger | None = None,
    approvals: Approvals | None = None,
) -> Dispatcher:
    """Sinks and runners for ``cfg``, with no Kafka: ``audit`` and ``dlq`` write records;
    ``ledger`` (the worker's) makes the suspension hook's budget and idempotency shared;
    ``approvals`` (the worker's: Kafka by default) defaults to the file in the data dir."""
    s = cfg.sinks
    metrics = metrics or SinkMetrics.create(registry)
    policy = load_policy(s.policy_file)
    api = None
    if s.account_api_url:
        api = AccountApi(s.account_api_url, s.secret("account_api_auth"),
                         timeout_s=s.request_timeout_s)
    elif not policy.dry_run:
        log.warning("policy has dry_run = false but sinks.account_api_url is unset: dry-run")
        policy = policy.model_copy(update={"dry_run": True})
    retry = RetryPolicy(s.max_attempts, s.backoff_initial_s, s.backoff_max_s)

    def runner(sink: Any, min_interval_s: float = 0.0) -> SinkRunner:
        return SinkRunner(sink, metrics, queue_size=s.queue_size, retry=retry,
                          min_interval_s=min_interval_s)

    runners = []
    slack_mode = "off"
    slack_url, slack_token = s.secret("slack_webhook_url"), s.secret("slack_bot_token")
    if slack_url or slack_token:
        slack = SlackSink(webhook_url=slack_url, bot_token=slack_token, channel=s.slack_channel,
                          api_url=s.slack_api_url, timeout_s=s.request_timeout_s,
                          new_per_minute=s.slack_new_messages_per_minute,
                          state_path=Path(cfg.worker.data_dir) / "slack_messages.json",
                          console_url=cfg.console.public_url)
        slack_mode = slack.mode
        runners.append(runner(slack, s.slack_min_interval_s))
    secret = s.secret("webhook_secret")
    urls = s.webhook_url_list()
    for i, url in enumerate(urls):
        assert secret is not None  # the config requires it with webhook URLs
        runners.append(runner(WebhookSink(url, secret, index=i, timeout_s=s.request_timeout_s)))
    agreement = Agreement(policy.families, policy.corroboration_share)
    # The budget alert's runbook sits beside detectors.md; no runbook base, no link.
    docs = s.runbook_url.rsplit("/", 1)[0] + "/" if s.runbook_url else ""
    dispatcher = Dispatcher(
        runners,
        dlq=dlq,
        metrics=metrics,
        agreement=agreement,
        min_agreeing=policy.min_agreeing_detectors,
        runbook_url=s.runbook_url,
        grafana_url=s.grafana_url,
        budget_runbook_url=f"{docs}delivery.md#action-budget-exceeded" if docs else "",
    )
    suspension = SuspensionSink(
        PolicyEngine(policy),
        agreement,
        audit=audit,
        api=api,
        store=approvals or FileApprovals(approvals_path(cfg.worker.data_dir)),
        raise_alert=dispatcher.raise_system_alert,
        metrics=metrics,
        ledger=ledger,
    )
    dispatcher.add_runner(runner(suspension))
    log.info(
        "delivery: slack=%s webhooks=%s account_api=%s dry_run=%s",
        slack_mode,
        len(urls),
        "on" if api is not None else "off",
        policy.dry_run,
    )
    return dispatcher


def install_delivery(
    app: faust.App,
    cfg: Config,
    registry: CollectorRegistry,
    *,
    signer: RecordSigner | None = None,
    record_metrics: RecordMetrics | None = None,
) -> Dispatcher:
    """Add the delivery agent, its service and the approvals timer to ``app``.

    ``signer`` verifies ``alerts`` records and signs what this stage writes (``actions``,
    ``alerts-dlq``); the app passes the one it signs alerts with."""
    t = cfg.topics
    signer = signer or signer_for(cfg)
    record_metrics = record_metrics or RecordMetrics.create(registry)
    # One partition: one worker at a time runs the suspension hook (its budget is global).
    alerts = app.topic(t.alerts, value_type=bytes, partitions=1)
    alerts_dlq = app.topic(t.alerts_dlq, value_type=bytes)
    actions = app.topic(t.actions, value_type=bytes)

    async def send_dlq(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        # force: send now, not when the current event is acked, and wait for the broker's
        # acknowledgement so a failure is seen (and retried) here.
        fut = await alerts_dlq.send(key=key, value=value, headers=headers, force=True)
        await fut

    write_dlq = DeadLetterWriter(send_dlq, signer, t.alerts_dlq, record_metrics.dlq_write_failures)

    async def write_audit(rec: dict[str, Any]) -> None:
        key = str(rec.get("idempotency_key") or rec.get("alert_id")).encode()
        value = orjson.dumps(rec)
        await actions.send(key=key, value=value, headers=signer.headers(t.actions, key, value))

    ledger = KafkaLedger(cfg.broker.bootstrap, ledger_topic(cfg.worker.app_id), signer,
                         registry, client_kwargs(cfg.broker))
    approvals = open_approvals(cfg, signer=signer, registry=registry)
    dispatcher = build_dispatcher(cfg, registry, audit=write_audit, dlq=write_dlq,
                                  ledger=ledger, approvals=approvals)

    @app.service
    class DeliveryService(Service):
        async def on_start(self) -> None:
            await dispatcher.start()

        async def on_stop(self) -> None:
            write_dlq.stopping = True
            left = await dispatcher.stop(cfg.sinks.drain_timeout_s)
            if left:
                log.warning("delivery stopped with %s alert deliveries sent to alerts-dlq", left)

    intake = AlertIntake(dispatcher, write_dlq, signer, t.alerts, record_metrics)

    @app.agent(alerts, concurrency=1)
    async def deliver_alerts(stream: faust.Stream[bytes]) -> None:
        # events(): the raw key, value and headers the signature covers.
        async for event in stream.events():
            m = event.message
            await intake.handle(m.key, m.value, m.headers, partition=m.partition,
                                offset=m.offset)

    @app.timer(interval=cfg.sinks.approvals_poll_s)
    async def pick_up_approvals() -> None:
        # Only the worker that runs the hook (it holds the one `alerts` partition) acts on
        # decisions: with a shared approvals topic every worker sees them.
        if TP(t.alerts, 0) in app.assignor.assigned_actives():
            try:
                await dispatcher.poll_approvals()
            except Exception as err:  # a broker blip must not crash the worker: next tick
                log.error("approvals poll failed: %s: %s", type(err).__name__, err)

    return dispatcher
