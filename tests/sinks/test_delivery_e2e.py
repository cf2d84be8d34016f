"""Delivery end to end on the real broker: a ramping account in, one Slack message (edited
in place, never duplicated), signed webhooks, and the audit records on the actions topic."""

from __future__ import annotations

import json
import random
import time

import orjson
import pytest

from streams.sinks.envelope import delivery_id
from tests.conftest import isolated_topics, produce, read_topic
from tests.integration.test_worker import WINDOW_S, _traffic, history_start
from tests.sinks.helpers import SUSPEND_ANY_ACCOUNT_POLICY, wait_until
from tests.sinks.receivers import SlackReceiver, WebhookReceiver

pytestmark = pytest.mark.integration

TOKEN = "xoxb-e2e-S3CRET-token"
HOOK_SECRET = "e2e-hook-S3CRET"


def _more(now: float) -> list[tuple[bytes, bytes]]:
    """Three more windows from ``now`` (a window boundary): benign accounts as before, the
    ramp 4x harder."""
    rng = random.Random(11)
    out = []
    for w in range(3):
        for acct in [f"benign-{i}" for i in range(30)] + ["ramp-1"]:
            rate = 320 if acct == "ramp-1" else 4
            for j in range(rate):
                ev = {"event_id": f"more-{acct}-{w}-{j}", "account_id": acct,
                      "ts": now + w * 2.0 + rng.random() * 2.0, "model": "model-a",
                      "input_tokens": rng.randint(50, 200),
                      "output_tokens": rng.randint(100, 400), "tier": "pro"}
                out.append((acct.encode(), orjson.dumps(ev)))
    out.sort(key=lambda kv: orjson.loads(kv[1])["ts"])
    return out


def _diagnosis(worker) -> str:
    """What the worker counted (late or duplicate events explain a missing alert) and the
    end of its log."""
    counts = {
        name: worker.metric(name)
        for name in (
            "distillwatch_events_consumed_total",
            "distillwatch_events_late_total",
            "distillwatch_events_duplicate_total",
            "distillwatch_windows_closed_total",
        )
    }
    return f"{counts}\n{worker.log()}"


# Whatever severity the detectors give the ramp, this policy (dry-run) would suspend it, so
# the expected audit trail does not depend on detector tuning; the gates have unit tests.
POLICY = SUSPEND_ANY_ACCOUNT_POLICY


def test_campaign_to_one_slack_message_webhooks_and_audit(broker, worker_factory, tmp_path):
    topics, env = isolated_topics()
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    slack = SlackReceiver(token=TOKEN, rate_limit_every=3, retry_after="0.2").start()
    hook = WebhookReceiver(HOOK_SECRET.encode()).start()
    try:
        worker = worker_factory(
            **env,
            DISTILLWATCH_SINKS__SLACK_BOT_TOKEN=TOKEN,
            DISTILLWATCH_SINKS__SLACK_CHANNEL="C-e2e",
            DISTILLWATCH_SINKS__RUNBOOK_URL="https://runbooks.example/docs/detectors.md",
            DISTILLWATCH_SINKS__SLACK_API_URL=f"{slack.base}/api",
            DISTILLWATCH_SINKS__SLACK_MIN_INTERVAL_S="0.1",
            DISTILLWATCH_SINKS__WEBHOOK_URLS=f"{hook.base}/hooks/distillwatch-S3CRET-path",
            DISTILLWATCH_SINKS__WEBHOOK_SECRET=HOOK_SECRET,
            DISTILLWATCH_SINKS__BACKOFF_INITIAL_S="0.05",
            DISTILLWATCH_SINKS__BACKOFF_MAX_S="0.5",
            DISTILLWATCH_SINKS__POLICY_FILE=str(policy),
        )
        now = time.time()
        # 40 s of history, the ramp, and the ramp going on 4x harder for 6 s more (event times
        # up to now + 6 s): one incident whose alert opens and is then updated.
        produce(broker, topics.requests,
                _traffic(now) + _more(history_start(now) + 20 * WINDOW_S))

        def ramp(records):
            return [r for r in records if r.get("entity_id") == "ramp-1"]

        alerts = read_topic(
            broker, topics.alerts,
            # Returns as soon as it holds (~20 s); the margin is for a loaded CI machine.
            until=lambda rs: any(r["state"] == "updated" for r in ramp(rs)), timeout=120,
        )
        assert ramp(alerts), _diagnosis(worker)
        time.sleep(2.0)
        alerts = read_topic(broker, topics.alerts, until=lambda rs: False, timeout=2)
        opens = [r for r in ramp(alerts) if r["state"] == "opened"]
        # One incident: at most one alert per detector on the account (no re-open).
        assert len({r["detector"] for r in opens}) == len(opens), [
            (r["alert_id"], r["detector"], r["state"]) for r in ramp(alerts)
        ]
        # Every alert change reaches the webhook once, signed (the receiver verifies).
        assert wait_until(lambda: len(hook.accepted) >= len(alerts), 20), worker.log()
        time.sleep(1.0)  # would a duplicate arrive, it would be by now
        assert hook.rejected == []
        assert len({b["delivery_id"] for b in hook.accepted}) == len(hook.accepted)
        # (>=: the worker may have emitted more changes since the topic was read)
        assert {b["delivery_id"] for b in hook.accepted} >= {
            delivery_id(c) for c in alerts
        }

        # Slack: the campaign is one message, edited in place as its alert changes.
        def about_ramp(payloads):
            return [p for p in payloads if "ramp-1" in p["text"]]

        assert wait_until(lambda: len(about_ramp(slack.posts)) >= 1, 10), worker.log()
        time.sleep(1.0)
        assert slack.invalid == []
        assert len(about_ramp(slack.posts)) == 1, [p["text"] for p in slack.posts]
        post = about_ramp(slack.posts)[0]
        [ts] = [ts for ts, m in slack.messages.items() if "ramp-1" in m["text"]]
        assert {u["ts"] for u in about_ramp(slack.updates)} <= {ts}
        if any(r["state"] != "opened" for r in ramp(alerts)):
            assert about_ramp(slack.updates), "the alert changed but its message was not edited"
        assert f"docs/detectors.md#{opens[0]['detector']}" in str(post["blocks"])

        # Audit: one record per open/update change, none executed (dry-run).
        changes = [r for r in alerts if r["state"] != "resolved"]
        ramp_ids = {r["alert_id"] for r in ramp(alerts)}
        n_before = len([r for r in ramp(alerts) if r["state"] != "resolved"])
        actions = read_topic(
            broker, topics.actions,
            until=lambda rs: {r["alert_id"] for r in rs} >= {c["alert_id"] for c in changes}
            and len([r for r in rs if r["alert_id"] in ramp_ids]) >= n_before,
            timeout=20,
        )
        assert {r["alert_id"] for r in actions} >= {c["alert_id"] for c in changes}
        assert all(r["dry_run"] for r in actions)
        assert not [r for r in actions if r["decision"] in ("executed", "failed")]
        trail = [r for r in actions if r["alert_id"] in ramp_ids]
        taken = [r for r in trail if r["decision"] != "skipped"]
        # One decision for the account, taken when its first alert opened; updates (and any
        # other detector's alert on it) are recognised as already decided and skipped.
        assert [(r["account_id"], r["action"], r["decision"]) for r in taken] == [
            ("ramp-1", "suspend", "dry_run")
        ], trail
        assert taken[0]["idempotency_key"] == f"{taken[0]['alert_id']}:ramp-1:suspend"
        # One record per alert change (the worker may have emitted more since we read).
        later = read_topic(broker, topics.alerts, until=lambda rs: False, timeout=1)
        n_after = len([r for r in ramp(later) if r["state"] != "resolved"])
        assert n_before <= len(trail) <= n_after
        assert all(r["reason"].startswith(("already decided", "account already"))
                   for r in trail if r is not taken[0])
        # Alerts of several detectors on the account share its one message.
        final = str(slack.messages[ts]["blocks"])
        for det in {r["detector"] for r in ramp(alerts)}:
            assert f"Runbook: {det}" in final

        assert worker.metric("distillwatch_sink_sent_total", {"sink": "slack"}) >= 1
        assert worker.metric("distillwatch_sink_failed_total", {"sink": "webhook"}) == 0
        assert worker.metric("distillwatch_sink_queued", {"sink": "slack"}) == 0
        log = worker.log()
        assert "S3CRET" not in log
        assert "S3CRET" not in worker.metrics_text()
    finally:
        slack.stop()
        hook.stop()


def test_coordinated_campaign_is_one_message_and_one_approval(
    broker, worker_factory, tmp_path
):
    """200 young accounts on shared networks and cards, one templated request per hour each,
    among 300 ordinary users: three hours of event time replayed through the worker with
    production-sized windows. Default policy: dry-run, approval above 50 members."""
    from streams.cli import main as cli
    from tests.detectors.synth import benign, hydra, merged

    topics, env = isolated_topics()
    slack = SlackReceiver(token=TOKEN).start()
    try:
        worker = worker_factory(
            **env,
            DISTILLWATCH_WINDOWS__SIZE_S="60",
            DISTILLWATCH_WINDOWS__LATENESS_S="10",
            DISTILLWATCH_SINKS__SLACK_BOT_TOKEN=TOKEN,
            DISTILLWATCH_SINKS__SLACK_CHANNEL="C-e2e",
            DISTILLWATCH_SINKS__SLACK_API_URL=f"{slack.base}/api",
            DISTILLWATCH_SINKS__SLACK_MIN_INTERVAL_S="0.05",
            DISTILLWATCH_SINKS__APPROVALS_POLL_S="0.5",
            # The file backend, read below; the Kafka one: tests/sinks/test_approvals_kafka.py.
            DISTILLWATCH_SINKS__APPROVALS_STORE="file",
        )
        start = time.time() - 3 * 3600 - 300
        events = merged(hydra(n=200, hours=3, start=start), benign(n=300, hours=3, start=start))
        produce(broker, topics.requests,
                [(e.account_id.encode(), orjson.dumps(e.to_dict())) for e in events])

        def pending(rs):
            return [r for r in rs if r["decision"] == "pending_approval"]

        actions = read_topic(broker, topics.actions, until=lambda rs: bool(pending(rs)),
                             timeout=90)
        [req] = pending(actions)
        time.sleep(2.0)
        alerts = read_topic(broker, topics.alerts, until=lambda rs: False, timeout=2)
        campaign = {(r["entity_type"], r["entity_id"]) for r in alerts}
        assert len(campaign) == 1 and next(iter(campaign))[0] == "cluster", campaign

        # Slack: one message for the campaign, edited as it grew.
        assert slack.invalid == []
        assert [p["text"].split("] ")[1].split(":")[0] for p in slack.posts] == [
            f"cluster {req['entity_id']}"
        ]
        assert slack.updates and {u["ts"] for u in slack.updates} == set(slack.messages)

        # Nobody is suspended without a human: approve on the CLI, the worker applies it
        # (dry-run: the suspensions are recorded, not executed).
        approvals = tmp_path / "data" / "approvals.json"
        assert cli(["actions", "approve", req["alert_id"], "--file", str(approvals),
                    "--by", "oncall", "--note", "e2e"]) == 0
        members = len(json.loads(approvals.read_text())["approvals"][req["alert_id"]]["members"])
        assert members > 50

        def suspended(rs):
            return [r for r in rs if r["action"] == "suspend" and r["decision"] == "dry_run"]

        actions = read_topic(broker, topics.actions,
                             until=lambda rs: len(suspended(rs)) >= members, timeout=30)
        assert len(suspended(actions)) == members, worker.log()
        assert len({r["account_id"] for r in suspended(actions)}) == members
        [ok] = [r for r in actions if r["decision"] == "approved"]
        assert ok["by"] == "oncall" and ok["note"] == "e2e" and ok["count"] == members
        assert not [r for r in actions if r["decision"] in ("executed", "failed")]
    finally:
        slack.stop()
