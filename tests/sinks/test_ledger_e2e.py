"""The suspension hook's budget and idempotency memory survive restarts and are shared by
every worker (issue 11, item 5): real workers on the embedded broker, signed alerts in,
the ``actions`` audit trail read back.

The policy throttles every warning account alert (throttles spend the budget and need no
agreement) in dry-run, with a budget of 2 per hour, so no account API is needed."""

from __future__ import annotations

import os
import signal
import uuid

import orjson

from streams.integrity import RecordSigner
from tests.conftest import FAST_WORKER_ENV, isolated_topics, read_topic
from tests.sinks.helpers import change

POLICY = """
dry_run = true
[breaker]
max_actions = 2
interval_s = 3600
[[rules]]
entity_type = "account"
min_severity = "warning"
action = "throttle"
"""

SIGNER = RecordSigner(FAST_WORKER_ENV["DISTILLWATCH_WORKER__RECORD_SECRET"].encode())
BUDGET_SKIP = "action budget exceeded (breaker open)"


def _send(broker, topic: str, changes: list[dict]) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    try:
        for c in changes:
            k, v = c["alert_id"].encode(), orjson.dumps(c)
            p.send(topic, key=k, value=v, headers=SIGNER.headers(topic, k, v))
        p.flush()
    finally:
        p.close()


def _alert(name: str) -> dict:
    return change(name, alert_id=f"alert-{name}")


def _actions(broker, topic: str, done: set[str], timeout: float = 60.0) -> list[dict]:
    """The audit trail once every alert id in ``done`` has a record."""
    recs = read_topic(broker, topic, lambda rs: done <= {r.get("alert_id") for r in rs},
                      timeout=timeout)
    assert done <= {r.get("alert_id") for r in recs}, recs
    return recs


def _by_alert(recs: list[dict]) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for r in recs:
        out.setdefault(r["alert_id"], []).append((r["decision"], r["reason"]))
    return out


def _env(tmp_path, topics_env: dict[str, str], app_id: str, data: str) -> dict[str, str]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    return {**topics_env, "DISTILLWATCH_SINKS__POLICY_FILE": str(policy),
            "DISTILLWATCH_WORKER__APP_ID": app_id,
            # A fresh data dir for each life: what survives is in Kafka, not on the disk.
            "DISTILLWATCH_WORKER__DATA_DIR": str(tmp_path / data)}


def test_budget_and_idempotency_survive_sigterm_and_kill_9(broker, worker_factory, tmp_path):
    topics, tenv = isolated_topics()
    app_id = f"dw-ledger-{uuid.uuid4().hex[:8]}"
    w1 = worker_factory(**_env(tmp_path, tenv, app_id, "d1"))
    a1, a2, a3 = _alert("a1"), _alert("a2"), _alert("a3")
    _send(broker, topics.alerts, [a1, a2])
    recs = _actions(broker, topics.actions, {"alert-a1", "alert-a2"})
    assert [r["decision"] for r in recs] == ["dry_run", "dry_run"], w1.log()
    w1.stop()  # SIGTERM

    w2 = worker_factory(**_env(tmp_path, tenv, app_id, "d2"))
    # The budget of 2 was spent before the restart: a3 is refused; a1 redelivered (same
    # record) is not decided again; a4 marks the end of this batch.
    _send(broker, topics.alerts, [a3, a1, _alert("a4")])
    recs = _actions(broker, topics.actions, {"alert-a3", "alert-a4"})
    by = _by_alert(recs)
    assert by["alert-a3"] == [("skipped", BUDGET_SKIP)], w2.log()
    assert by["alert-a4"] == [("skipped", BUDGET_SKIP)]
    assert by["alert-a1"] == [("dry_run", "rule 0: throttle")]
    os.kill(w2.proc.pid, signal.SIGKILL)
    w2.proc.wait()

    w3 = worker_factory(**_env(tmp_path, tenv, app_id, "d3"))
    _send(broker, topics.alerts, [a2, _alert("a5")])
    recs = _actions(broker, topics.actions, {"alert-a5"})
    by = _by_alert(recs)
    assert by["alert-a5"] == [("skipped", BUDGET_SKIP)], w3.log()
    assert by["alert-a2"] == [("dry_run", "rule 0: throttle")]
    assert sum(r["decision"] == "dry_run" for r in recs) == 2


def test_two_workers_share_one_budget(broker, worker_factory, tmp_path):
    topics, tenv = isolated_topics()
    app_id = f"dw-ledger-{uuid.uuid4().hex[:8]}"
    workers = [worker_factory(**_env(tmp_path, tenv, app_id, f"w{i}")) for i in range(2)]
    alerts = [_alert(f"b{i}") for i in range(6)]
    _send(broker, topics.alerts, alerts)
    recs = _actions(broker, topics.actions, {a["alert_id"] for a in alerts}, timeout=90)
    taken = [r for r in recs if r["decision"] == "dry_run"]
    assert len(taken) == 2, "\n".join(w.log(2000) for w in workers)
    assert sum(r["reason"] == BUDGET_SKIP for r in recs) == 4
