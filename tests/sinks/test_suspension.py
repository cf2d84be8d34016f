"""The suspension hook end to end without Kafka: a real account API on 127.0.0.1, the audit
trail, the approvals file backend and the ``distillwatch actions`` command (the Kafka
backend: tests/sinks/test_approvals_kafka.py and test_approvals_failover.py)."""

from __future__ import annotations

import asyncio
import logging

from streams.cli import main as cli
from tests.sinks.helpers import Harness, change
from tests.sinks.receivers import AccountApiReceiver, WebhookReceiver

LIVE = """
dry_run = false
approval_above_members = 5
[breaker]
max_actions = 3
interval_s = 3600
[allowlist]
accounts = ["vip"]
"""

AUTH = "Bearer api-S3CRET"


def _by_decision(audit, decision):
    return [r for r in audit if r["decision"] == decision]


def test_dry_run_default_records_and_calls_nothing(tmp_path):
    api = AccountApiReceiver(AUTH).start()
    try:
        # No policy file: the built-in policy is dry-run even with an account API configured.
        h = Harness(tmp_path, account_api_url=f"{api.base}/v1/actions", account_api_auth=AUTH)
        asyncio.run(h.run([
            change("a1", severity="critical"),
            change("tmpl:t", entity_type="cluster", detector="template_cluster",
                   severity="critical", members=["a1", "a2"]),
        ]))
    finally:
        api.stop()
    assert api.requests == []
    dry = _by_decision(h.audit, "dry_run")
    # a1 alone is flagged (one detector); the cluster makes two detectors agree on a1, so the
    # cluster's decision for a1 is a suspension; a2 has only the cluster detector: flag.
    assert [(r["account_id"], r["action"], r["alert_id"]) for r in dry] == [
        ("a1", "flag", "account-a1-account_baseline"),
        ("a1", "suspend", "cluster-tmpl:t-template_cluster"),
        ("a2", "flag", "cluster-tmpl:t-template_cluster"),
    ]
    assert all(r["dry_run"] for r in h.audit)
    assert dry[1]["agreeing_detectors"] == ["account_baseline", "template_cluster"]
    assert h.metric("distillwatch_sink_actions_total", action="suspend", decision="dry_run") == 1


def test_live_policy_calls_api_with_idempotency_and_auth(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    api = AccountApiReceiver(AUTH).start()
    try:
        h = Harness(tmp_path, policy=LIVE, account_api_url=f"{api.base}/v1/actions",
                    account_api_auth=AUTH)
        cl = change("tmpl:t", entity_type="cluster", detector="template_cluster",
                    severity="critical", members=["a1", "vip"])
        asyncio.run(h.run([
            change("a1", severity="critical"),
            cl,
            {**cl, "state": "updated", "score": 30.0, "ts": cl["ts"] + 60},  # same alert again
            change("a1", severity="critical", state="updated", score=40.0, ts=cl["ts"] + 60),
        ]))
    finally:
        api.stop()
    assert [(a["action"], a["account_id"]) for a in api.actions] == [
        ("flag", "a1"), ("suspend", "a1")
    ]
    assert api.keys == ["account-a1-account_baseline:a1:flag",
                        "cluster-tmpl:t-template_cluster:a1:suspend"]
    assert [(r["account_id"], r["action"]) for r in _by_decision(h.audit, "executed")] == [
        ("a1", "flag"), ("a1", "suspend")
    ]
    skipped = _by_decision(h.audit, "skipped")
    assert any(r["account_id"] == "vip" and r["reason"] == "allowlisted account" for r in skipped)
    assert any(r["reason"].startswith("already decided") for r in skipped)
    # The account's own alert, now agreed with, does not suspend it a second time.
    assert any(r["account_id"] == "a1" and r["alert_id"] == "account-a1-account_baseline"
               and r["reason"].startswith("account already suspend") for r in skipped)
    assert "S3CRET" not in caplog.text


def test_breaker_raises_one_budget_alert(tmp_path):
    api = AccountApiReceiver(AUTH).start()
    hook = WebhookReceiver(b"k").start()
    try:
        h = Harness(tmp_path, policy=LIVE, account_api_url=f"{api.base}/v1/actions",
                    account_api_auth=AUTH, webhook_urls=f"{hook.base}/h", webhook_secret="k",
                    runbook_url="https://runbooks.example/docs/detectors.md")
        members = [f"m{i}" for i in range(5)]
        changes = [
            change("tmpl:t", entity_type="cluster", detector="template_cluster",
                   severity="critical", members=members),
            *(change(m, severity="critical") for m in members),
        ]
        asyncio.run(h.run(changes))
    finally:
        api.stop()
        hook.stop()
    suspended = [a["account_id"] for a in api.actions if a["action"] == "suspend"]
    assert len(suspended) == 3  # the budget
    over = [r for r in h.audit if r["reason"] == "action budget exceeded (breaker open)"]
    assert len(over) == 2
    system = [b for b in hook.accepted if b["type"] == "system_alert"]
    assert len(system) == 1
    assert system[0]["alert"]["detector"] == "action_budget"
    assert system[0]["severity"] == "critical"
    assert system[0]["runbook_url"].endswith("docs/delivery.md#action-budget-exceeded")
    assert h.metric("distillwatch_sink_breaker_open") == 1


def test_big_cluster_waits_for_cli_approval(tmp_path, capsys):
    api = AccountApiReceiver(AUTH).start()
    members = ["vip"] + [f"m{i}" for i in range(7)]
    cl = change("tmpl:big", entity_type="cluster", detector="template_cluster",
                severity="critical", members=members)
    approvals = tmp_path / "data" / "approvals.json"

    async def scenario(h: Harness) -> None:
        await h.dispatcher.start()
        await h.dispatcher.submit(cl)
        await h.dispatcher.join()
        assert api.actions == []
        assert cli(["actions", "list", "--file", str(approvals)]) == 0
        listing = capsys.readouterr().out
        assert cl["alert_id"] in listing and "pending" in listing
        assert cli(["actions", "approve", cl["alert_id"], "--file", str(approvals),
                    "--by", "alice", "--note", "confirmed campaign"]) == 0
        # Deciding twice is refused.
        assert cli(["actions", "deny", cl["alert_id"], "--file", str(approvals)]) == 1
        assert await h.dispatcher.poll_approvals() == 1
        await h.dispatcher.join()
        assert await h.dispatcher.poll_approvals() == 0  # processed: not picked up again
        await h.dispatcher.stop(1.0)

    try:
        h = Harness(tmp_path, policy=LIVE.replace("max_actions = 3", "max_actions = 1"),
                    account_api_url=f"{api.base}/v1/actions", account_api_auth=AUTH)
        asyncio.run(scenario(h))
    finally:
        api.stop()
    # Approved by a human: all 7 non-allowlisted members, past the breaker's budget of 1.
    assert sorted(a["account_id"] for a in api.actions) == sorted(members[1:])
    pending = _by_decision(h.audit, "pending_approval")
    assert len(pending) == 1 and pending[0]["count"] == 7
    [approved] = _by_decision(h.audit, "approved")
    assert approved["by"] == "alice" and approved["note"] == "confirmed campaign"
    assert len(_by_decision(h.audit, "executed")) == 7
    assert cli(["actions", "list", "--all", "--file", str(approvals)]) == 0
    assert "approved" in capsys.readouterr().out


def test_denied_approval_executes_nothing(tmp_path):
    members = [f"m{i}" for i in range(8)]
    cl = change("tmpl:big", entity_type="cluster", severity="critical", members=members)
    approvals = tmp_path / "data" / "approvals.json"

    async def scenario(h: Harness) -> None:
        await h.dispatcher.start()
        await h.dispatcher.submit(cl)
        await h.dispatcher.join()
        assert cli(["actions", "deny", cl["alert_id"], "--file", str(approvals),
                    "--by", "bob"]) == 0
        assert await h.dispatcher.poll_approvals() == 0
        await h.dispatcher.stop(1.0)

    h = Harness(tmp_path, policy="approval_above_members = 5\n")
    asyncio.run(scenario(h))
    [denied] = _by_decision(h.audit, "denied")
    assert denied["by"] == "bob" and denied["count"] == 8
    assert not _by_decision(h.audit, "dry_run")


def test_api_down_fails_to_dlq_and_audits_failure(tmp_path):
    api = AccountApiReceiver("Bearer other").start()  # rejects our auth: 401, permanent
    try:
        h = Harness(tmp_path, policy=LIVE, account_api_url=f"{api.base}/v1/actions",
                    account_api_auth=AUTH)
        asyncio.run(h.run([change("a1", severity="critical")]))
    finally:
        api.stop()
    [failed] = _by_decision(h.audit, "failed")
    assert failed["account_id"] == "a1" and "permanent_error" in failed["reason"]
    assert [(r["sink"], r["reason"]) for r in h.dlq] == [("suspension", "permanent_error")]


def test_failed_steps_resume_without_deciding_twice(tmp_path):
    api = AccountApiReceiver(AUTH).start()
    try:
        h = Harness(tmp_path, policy=LIVE, account_api_url=f"{api.base}/v1/actions",
                    account_api_auth=AUTH)
        writes = {"n": 0}
        real = h.dispatcher.suspension.sink.audit

        async def flaky(rec):
            writes["n"] += 1
            if writes["n"] in (1, 3):  # the broker hiccups twice
                raise ConnectionError("broker away")
            await real(rec)

        h.dispatcher.suspension.sink.audit = flaky
        cl = change("tmpl:t", entity_type="cluster", detector="template_cluster",
                    severity="critical", members=["vip", "a1", "a2"])
        asyncio.run(h.run([change("a1", detector="fingerprint", severity="critical"), cl]))
    finally:
        api.stop()
    # Every decision recorded once, every call made once, nothing dead-lettered.
    assert [(r["account_id"], r["action"], r["decision"]) for r in h.audit] == [
        ("a1", "flag", "executed"),
        ("vip", "suspend", "skipped"),
        ("a1", "suspend", "executed"),
        ("a2", "flag", "executed"),
    ]
    assert [(a["action"], a["account_id"]) for a in api.actions] == [
        ("flag", "a1"), ("suspend", "a1"), ("flag", "a2")
    ]
    assert h.dlq == []
    assert h.metric("distillwatch_sink_retried_total", sink="suspension") == 2


def test_approvals_backend_is_chosen_by_configuration(tmp_path):
    from streams.config import Config
    from streams.sinks.approvals import FileApprovals, open_approvals
    from streams.sinks.approvals_kafka import KafkaApprovals

    cfg = Config(worker={"data_dir": str(tmp_path), "record_secret": "x" * 32,
                         "app_id": "dw-x"})
    kafka = open_approvals(cfg)
    # The worker's default: the shared topic, named after the consumer group.
    assert isinstance(kafka, KafkaApprovals) and kafka.where == "topic dw-x-approvals"
    as_file = open_approvals(cfg.model_copy(update={"sinks": cfg.sinks.model_copy(
        update={"approvals_store": "file"})}))
    assert isinstance(as_file, FileApprovals)
    assert as_file.where == str(tmp_path / "approvals.json")
    # --file / --approvals FILE always means that file.
    explicit = open_approvals(cfg, file=tmp_path / "other.json")
    assert isinstance(explicit, FileApprovals) and explicit.where.endswith("other.json")
