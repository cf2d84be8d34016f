"""Forged and poison records on the real broker, tried as an attacker would (issue 11, items 4
and 6): nothing unsigned reaches the suspension hook, and nothing the delivery stage cannot
handle is lost; it is on ``alerts-dlq`` with a reason."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest

from streams.integrity import SIG_HEADER, RecordSigner
from tests.conftest import FAST_WORKER_ENV, isolated_topics, read_topic
from tests.sinks.helpers import SUSPEND_ANY_ACCOUNT_POLICY, wait_until
from tests.sinks.receivers import WebhookReceiver

pytestmark = pytest.mark.integration


def _produce(broker, topic: str, records: list[tuple[bytes | None, bytes, list | None]]) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    try:
        for key, value, headers in records:
            p.send(topic, key=key, value=value, headers=headers or [])
        p.flush()
    finally:
        p.close()


def _read_raw(broker, topic: str, until, timeout: float = 30.0) -> list[Any]:
    """Every record of ``topic`` from the beginning (key, value and headers intact)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or set()]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=300).values():
                out.extend(recs)
            if until(out):
                break
        return out
    finally:
        c.close()


def test_broker_carries_record_headers(broker):
    """The whole scheme rests on Tansu keeping record headers byte for byte."""
    topic = f"hdr-{uuid.uuid4().hex[:8]}"
    signer = RecordSigner(b"k" * 32)
    value = orjson.dumps({"x": 1})
    headers = [*signer.headers(topic, b"key", value), ("other", b"\x00\xff")]
    _produce(broker, topic, [(b"key", value, headers)])
    [rec] = _read_raw(broker, topic, until=lambda rs: len(rs) >= 1)
    got = [(k, bytes(v)) for k, v in rec.headers]
    assert got == headers
    assert signer.verify(topic, rec.key, rec.value, rec.headers)
    assert got[0][0] == SIG_HEADER


SECRET = FAST_WORKER_ENV["DISTILLWATCH_WORKER__RECORD_SECRET"].encode()
HOOK_SECRET = "forged-hook-secret"

# Were a forged alert accepted, this policy (dry-run) would record a suspension for it: one
# agreeing detector and any severity suffice, so an empty `actions` topic means something.
POLICY = SUSPEND_ANY_ACCOUNT_POLICY


def _alert(aid: str, account: str, detector: str, severity: str = "critical") -> dict:
    return {"alert_id": aid, "state": "opened", "entity_type": "account",
            "entity_id": account, "detector": detector, "severity": severity,
            "ts": time.time(), "window_start": time.time() - 60, "window_end": time.time(),
            "score": 42.0, "threshold": 6.0, "evidence": {"signals": []}}


def _dlq(broker, topic: str, until) -> list[tuple[Any, dict]]:
    recs = _read_raw(broker, topic, until=lambda rs: until([orjson.loads(r.value) for r in rs]))
    return [(r, orjson.loads(r.value)) for r in recs]


def test_forged_alerts_never_reach_the_suspension_hook(broker, worker_factory, tmp_path):
    topics, env = isolated_topics()
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    worker = worker_factory(**env, DISTILLWATCH_SINKS__POLICY_FILE=str(policy))
    real = RecordSigner(SECRET)
    other = RecordSigner(b"an-attacker-guessed-this-key-0000")

    def rec(aid: str, account: str, detector: str) -> tuple[bytes, bytes]:
        return aid.encode(), orjson.dumps(_alert(aid, account, detector))

    forged: list[tuple[bytes | None, bytes, list | None]] = []
    # Two detectors on one victim, as in the reproduced attack, with no signature at all.
    for det in ("account_extraction", "account_baseline"):
        k, v = rec(f"nohdr-{det}", "victim-1", det)
        forged.append((k, v, None))
    k, v = rec("otherkey", "victim-2", "account_extraction")
    forged.append((k, v, other.headers(topics.alerts, k, v)))
    # A genuine signature, but made for the findings topic: a finding replayed as an alert.
    k, v = rec("replayed", "victim-3", "account_extraction")
    forged.append((k, v, real.headers(topics.findings, k, v)))
    # A genuine alert signature with the value changed in one byte (the account id).
    k, v = rec("altered", "victim-4", "account_extraction")
    hdr = real.headers(topics.alerts, k, v)
    forged.append((k, v.replace(b"victim-4", b"victim-5"), hdr))
    # A genuine signature moved to another alert id (key).
    forged.append((b"moved-key", v, hdr))
    # Garbage and a second header: ambiguity is not authenticity.
    forged.append((k, v, [("dw-sig", b"v1:" + b"zz" * 32)]))
    forged.append((k, v, [*hdr, ("dw-sig", b"v1:" + b"00" * 32)]))
    forged.append((k, v, [("dw-sig", "v1:é".encode())]))
    # A forged finding: never becomes an alert.
    finding = {"type": "finding", "entity_type": "account", "entity_id": "victim-6",
               "detector": "account_extraction", "window_start": time.time() - 60,
               "window_end": time.time(), "score": 50.0, "threshold": 6.0,
               "severity": "critical", "evidence": {}}
    _produce(broker, topics.findings, [(b"victim-6", orjson.dumps(finding), None)])
    _produce(broker, topics.alerts, forged)
    # The control: a correctly signed alert is acted on, so silence above is meaningful.
    k, v = rec("genuine", "real-account", "account_extraction")
    _produce(broker, topics.alerts, [(k, v, real.headers(topics.alerts, k, v))])

    actions = read_topic(broker, topics.actions,
                         until=lambda rs: any(r["alert_id"] == "genuine" for r in rs),
                         timeout=30)
    assert [(r["account_id"], r["decision"]) for r in actions if r["decision"] != "skipped"] \
        == [("real-account", "dry_run")], worker.log()

    n = len(forged) + 1
    dlq = _dlq(broker, topics.alerts_dlq,
               until=lambda rs: len([r for r in rs if r["reason"] == "bad_signature"]) >= n)
    bad = [d for _, d in dlq if d["reason"] == "bad_signature"]
    assert len(bad) == n, [d for _, d in dlq]
    assert sorted(d["source_topic"] for d in bad) == sorted(
        [topics.alerts] * len(forged) + [topics.findings])
    # Never echoed as an alert (a replay of alerts-dlq must not re-inject it).
    assert all("alert" not in d for d in bad)
    # Our DLQ records are signed for alerts-dlq, and only for it.
    for r, _ in dlq:
        assert real.verify(topics.alerts_dlq, r.key, r.value, r.headers)
        assert not real.verify(topics.alerts, r.key, r.value, r.headers)
    # Nothing for any victim, no alert made from the forged finding.
    time.sleep(1.0)
    actions = read_topic(broker, topics.actions, until=lambda rs: False, timeout=1)
    assert not [r for r in actions if str(r.get("account_id", "")).startswith("victim")]
    alerts = read_topic(broker, topics.alerts, until=lambda rs: False, timeout=1)
    assert not [r for r in alerts if r.get("entity_id") == "victim-6"]
    assert worker.metric("distillwatch_records_rejected_total",
                         {"topic": "alerts", "reason": "bad_signature"}) == len(forged)
    assert worker.metric("distillwatch_records_rejected_total",
                         {"topic": "findings", "reason": "bad_signature"}) == 1
    assert worker.proc.poll() is None
    # The audit record we wrote is signed for `actions`.
    raw = _read_raw(broker, topics.actions, until=lambda rs: len(rs) >= 1)
    assert all(real.verify(topics.actions, r.key, r.value, r.headers) for r in raw)


def test_poison_alerts_are_dead_lettered_and_delivery_goes_on(broker, worker_factory):
    """An unknown severity used to crash the agent and lose the record; now each poison record
    is on alerts-dlq with its reason, and the next valid alert is still delivered."""
    topics, env = isolated_topics()
    hook = WebhookReceiver(HOOK_SECRET.encode()).start()
    try:
        worker = worker_factory(
            **env,
            DISTILLWATCH_SINKS__WEBHOOK_URLS=f"{hook.base}/hook",
            DISTILLWATCH_SINKS__WEBHOOK_SECRET=HOOK_SECRET,
        )
        signer = RecordSigner(SECRET)

        def signed(key: bytes, value: bytes) -> tuple[bytes, bytes, list]:
            return key, value, signer.headers(topics.alerts, key, value)

        poison = {
            "invalid_alert": [
                orjson.dumps(_alert("sev", "acct-1", "account_extraction", "catastrophic")),
                orjson.dumps({**_alert("st", "acct-1", "account_extraction"), "state": "x"}),
                orjson.dumps({**_alert("ts", "acct-1", "account_extraction"), "ts": "soon"}),
                orjson.dumps({**_alert("id", "acct-1", "account_extraction"), "alert_id": 7}),
                orjson.dumps({k: v for k, v in _alert("nodet", "a", "d").items()
                              if k != "detector"}),
                orjson.dumps({**_alert("mem", "c", "d"), "entity_type": "cluster",
                              "members": "not-a-list"}),
            ],
            "not_json": [b"{not json", b"\xff\xfe"],
            "not_object": [b"[1, 2]", b"null", b"\"alert\""],
        }
        records = [signed(f"p{i}".encode(), v)
                   for i, v in enumerate(v for vs in poison.values() for v in vs)]
        ok = _alert("after-poison", "acct-2", "account_extraction", "warning")
        records.append(signed(b"after-poison", orjson.dumps(ok)))
        _produce(broker, topics.alerts, records)

        assert wait_until(lambda: any(b["alert"]["alert_id"] == "after-poison"
                                      for b in hook.accepted), 30), worker.log()
        n = sum(len(v) for v in poison.values())
        dlq = _dlq(broker, topics.alerts_dlq, until=lambda rs: len(rs) >= n)
        got = sorted(d["reason"] for _, d in dlq)
        assert got == sorted(r for r, vs in poison.items() for _ in vs), dlq
        sev = next(d for _, d in dlq if d.get("alert_id") == "sev")
        assert sev["reason"] == "invalid_alert" and "severity" in sev["error"]
        assert sev["alert"]["severity"] == "catastrophic"  # kept whole, to replay once fixed
        assert [b["alert"]["alert_id"] for b in hook.accepted] == ["after-poison"]
        for reason, vs in poison.items():
            assert worker.metric("distillwatch_records_rejected_total",
                                 {"topic": "alerts", "reason": reason}) == len(vs)
        assert worker.metric("distillwatch_dlq_write_failures_total") == 0
        assert worker.proc.poll() is None
        assert "Traceback" not in worker.log(tail=None)
    finally:
        hook.stop()


def test_signed_findings_the_alert_agent_cannot_fold_are_dead_lettered(broker, worker_factory):
    """A signed record on `findings` is ours, so a bad one is a bug, not an attack; it must
    still not stop the alert agent (its supervisor would restart it past the record, lost).
    """
    topics, env = isolated_topics()
    worker = worker_factory(**env)
    signer = RecordSigner(SECRET)

    def signed(key: bytes, value: bytes) -> tuple[bytes, bytes, list]:
        return key, value, signer.headers(topics.findings, key, value)

    now = time.time()
    good = {"type": "finding", "entity_type": "account", "entity_id": "after-bad",
            "detector": "account_extraction", "window_start": now - 60, "window_end": now,
            "score": 50.0, "threshold": 6.0, "severity": "warning", "evidence": {}}
    bad = [
        b"{not json",
        orjson.dumps({**good, "entity_id": "x", "window_end": "later"}),
        orjson.dumps({"type": "watermark", "ts": "soon"}),
    ]
    records = [signed(f"b{i}".encode(), v) for i, v in enumerate(bad)]
    records.append(signed(b"after-bad", orjson.dumps(good)))
    _produce(broker, topics.findings, records)

    alerts = read_topic(broker, topics.alerts,
                        until=lambda rs: any(r["entity_id"] == "after-bad" for r in rs),
                        timeout=30)
    assert [r["entity_id"] for r in alerts] == ["after-bad"], worker.log()
    dlq = _dlq(broker, topics.alerts_dlq, until=lambda rs: len(rs) >= len(bad))
    assert sorted(d["reason"] for _, d in dlq) == ["invalid_finding"] * len(bad), dlq
    assert worker.metric("distillwatch_records_rejected_total",
                         {"topic": "findings", "reason": "invalid_finding"}) == len(bad)
    assert worker.proc.poll() is None
