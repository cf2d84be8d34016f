"""A pending approval survives a worker failover (issue 13 item 4): worker A's suspension
hook asks for approval, A stops, worker B of the same group takes over, a human approves with
``distillwatch actions approve`` from another process, and B carries it out exactly once.
Before that, approvals forged on the topic by someone without the record secret do nothing.

Real workers on the embedded broker, a signed cluster alert in, ``actions`` read back; the
policy is dry-run, so the suspensions are audit records, not API calls."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from streams.cli import main as cli
from streams.integrity import RecordSigner
from streams.sinks.approvals_kafka import approvals_topic
from tests.conftest import FAST_WORKER_ENV, isolated_topics, read_topic
from tests.sinks.helpers import change
from tests.sinks.test_approvals_kafka import _forge

pytestmark = pytest.mark.integration

SECRET = FAST_WORKER_ENV["DISTILLWATCH_WORKER__RECORD_SECRET"]
SIGNER = RecordSigner(SECRET.encode())
MEMBERS = [f"acct-{i}" for i in range(8)]


def _send_alert(broker, topic: str, c: dict) -> None:  # type: ignore[no-untyped-def]
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        k, v = c["alert_id"].encode(), orjson.dumps(c)
        p.send(topic, key=k, value=v, headers=SIGNER.headers(topic, k, v))
        p.flush()
    finally:
        p.close()


def test_pending_approval_moves_with_failover_and_runs_once(
    broker, worker_factory, tmp_path, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    topics, tenv = isolated_topics()
    app_id = f"dw-fail-{uuid.uuid4().hex[:8]}"
    policy = tmp_path / "policy.toml"
    policy.write_text("dry_run = true\napproval_above_members = 5\n")

    def env(data: str) -> dict[str, str]:
        # A data dir per worker: nothing of the approval may live on A's disk.
        return {**tenv, "DISTILLWATCH_WORKER__APP_ID": app_id,
                "DISTILLWATCH_SINKS__POLICY_FILE": str(policy),
                "DISTILLWATCH_SINKS__APPROVALS_POLL_S": "0.3",
                "DISTILLWATCH_WORKER__DATA_DIR": str(tmp_path / data)}

    cl = change("tmpl:hydra", entity_type="cluster", detector="template_cluster",
                severity="critical", members=MEMBERS, alert_id="camp-failover")
    aid = cl["alert_id"]

    def trail(rs: list[dict]) -> list[dict]:
        return [r for r in rs if r.get("alert_id") == aid]

    a = worker_factory(**env("a"))
    _send_alert(broker, topics.alerts, cl)
    recs = read_topic(broker, topics.actions,
                      lambda rs: any(r["decision"] == "pending_approval" for r in trail(rs)),
                      timeout=60)
    assert [r["decision"] for r in trail(recs)] == ["pending_approval"], a.log()
    a.stop()
    b = worker_factory(**env("b"))

    # The CLI, as on an on-call laptop: the broker, the app id and the record secret.
    monkeypatch.setenv("DISTILLWATCH_WORKER__APP_ID", app_id)
    monkeypatch.setenv("DISTILLWATCH_WORKER__RECORD_SECRET", SECRET)
    monkeypatch.setenv("DISTILLWATCH_WORKER__DATA_DIR", str(tmp_path / "laptop"))
    assert cli(["actions", "list", "--broker", broker.url]) == 0
    out = capsys.readouterr().out
    assert aid in out and "pending" in out

    # An attacker without the secret approves it on the topic: nothing happens.
    forged = _forge(broker, approvals_topic(app_id), aid)
    deadline = time.monotonic() + 30
    while (b.metric("distillwatch_approval_records_total", {"result": "rejected"}) or 0) \
            < forged and time.monotonic() < deadline:
        time.sleep(0.5)
    assert b.metric("distillwatch_approval_records_total", {"result": "rejected"}) == forged, \
        b.log()
    time.sleep(1.5)  # several poll intervals
    recs = read_topic(broker, topics.actions, lambda rs: False, timeout=1)
    assert [r["decision"] for r in trail(recs)] == ["pending_approval"], b.log()
    assert cli(["actions", "list", "--broker", broker.url]) == 0
    assert "pending" in capsys.readouterr().out

    assert cli(["actions", "approve", aid, "--broker", broker.url, "--by", "oncall",
                "--note", "failover"]) == 0
    capsys.readouterr()

    def suspended(rs: list[dict]) -> list[dict]:
        return [r for r in trail(rs) if r["action"] == "suspend" and r["decision"] == "dry_run"]

    recs = read_topic(broker, topics.actions, lambda rs: len(suspended(rs)) >= len(MEMBERS),
                      timeout=60)
    assert sorted(r["account_id"] for r in suspended(recs)) == sorted(MEMBERS), b.log()
    [ok] = [r for r in trail(recs) if r["decision"] == "approved"]
    assert (ok["by"], ok["note"], ok["count"]) == ("oncall", "failover", len(MEMBERS))
    # Exactly once: later polls find it processed and queue nothing more.
    time.sleep(1.5)
    recs = read_topic(broker, topics.actions, lambda rs: False, timeout=1)
    assert len(suspended(recs)) == len(MEMBERS)
    assert sum(r["decision"] == "approved" for r in trail(recs)) == 1
    assert cli(["actions", "list", "--all", "--json", "--broker", broker.url]) == 0
    [rec] = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (rec["status"], rec["decided_by"], rec["result"]) == ("approved", "oncall",
                                                                  "executed")
