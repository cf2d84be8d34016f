"""RecordSigner as an attacker would probe it, the generated-key fallback, the DLQ writer's
retries and alarm, and the delivery intake's boundary checks (no Kafka: the integration
tests in tests/sinks/test_forged.py run them on the broker)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streams.config import Config, load_config
from streams.integrity import SIG_HEADER, RecordSigner, signer_for
from streams.metrics import RecordMetrics
from streams.sinks.base import ListSink, SinkRunner
from streams.sinks.dead_letter import DeadLetterWriter
from streams.sinks.dispatch import Dispatcher
from streams.sinks.intake import AlertIntake, invalid_reason
from streams.sinks.metrics import SinkMetrics

KEY = b"unit-test-record-secret-0123456789"
S = RecordSigner(KEY)
VALUE = orjson.dumps({"alert_id": "a1", "severity": "critical"})
GOOD = S.headers("alerts", b"a1", VALUE)


def test_roundtrip_and_header_form():
    [(name, sig)] = GOOD
    assert name == SIG_HEADER and sig.startswith(b"v1:") and len(sig) == 3 + 64
    assert S.verify("alerts", b"a1", VALUE, GOOD)
    assert S.verify("alerts", b"a1", VALUE, [(b"dw-sig", sig)])  # bytes header names
    assert S.verify("alerts", b"a1", VALUE, {SIG_HEADER: sig})


@pytest.mark.parametrize(
    "topic,key,value",
    [
        ("findings", b"a1", VALUE),  # replayed onto another topic
        ("alerts-dlq", b"a1", VALUE),
        ("alerts", b"a2", VALUE),  # moved to another alert id
        ("alerts", None, VALUE),  # key dropped
        ("alerts", b"", VALUE),  # null and empty key differ
        ("alerts", b"a1", VALUE[:-1]),  # truncated value
        ("alerts", b"a1", VALUE.replace(b"critical", b"criticaL")),  # one byte changed
        ("alerts", b"a1v", VALUE[1:]),  # key/value boundary shifted
    ],
)
def test_signature_binds_topic_key_and_value(topic, key, value):
    assert not S.verify(topic, key, value, GOOD)


def test_another_key_is_rejected():
    assert not RecordSigner(b"x" * 32).verify("alerts", b"a1", VALUE, GOOD)


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        {},
        [("other", b"v1:00")],
        [(SIG_HEADER, b"")],
        [(SIG_HEADER, GOOD[0][1][:-1])],  # truncated
        [(SIG_HEADER, GOOD[0][1] + b"0")],  # too long
        [(SIG_HEADER, GOOD[0][1].upper())],  # case of hex / prefix changed
        [(SIG_HEADER, GOOD[0][1][3:])],  # no version prefix
        [(SIG_HEADER, b"v2:" + GOOD[0][1][3:])],  # unknown version
        [(SIG_HEADER, b"v1:" + b"zz" * 32)],  # not hex
        [(SIG_HEADER, "v1:é".encode())],  # non-ASCII bytes
        [(SIG_HEADER, "v1:é")],  # a str, non-ASCII
        [(SIG_HEADER, None)],
        [(SIG_HEADER, 12345)],
        [(SIG_HEADER,)],  # malformed pair
        [None],
        "dw-sig",
        12345,
        [*GOOD, (SIG_HEADER, b"v1:" + b"0" * 64)],  # a second header: ambiguous
        [*GOOD, *GOOD],  # even two good ones
    ],
)
def test_bad_headers_are_false_never_an_exception(headers):
    assert S.verify("alerts", b"a1", VALUE, headers) is False


@pytest.mark.parametrize("key,value", [("a1", VALUE), (b"a1", None), (b"a1", "text"), (1, VALUE)])
def test_wrong_types_are_false(key, value):
    assert S.verify("alerts", key, value, GOOD) is False


def test_short_secret_refused():
    with pytest.raises(ValueError):
        RecordSigner(b"short")


def test_configured_secret_and_file(tmp_path):
    cfg = Config(worker={"record_secret": KEY.decode()})
    assert signer_for(cfg).verify("alerts", b"a1", VALUE, GOOD)
    f = tmp_path / "secret"
    f.write_text(KEY.decode() + "\n")
    cfg = load_config(None, {"DISTILLWATCH_WORKER__RECORD_SECRET_FILE": str(f)})
    assert signer_for(cfg).verify("alerts", b"a1", VALUE, GOOD)
    assert "unit-test" not in str(cfg.masked())


def test_generated_key_is_private_kept_and_warned(tmp_path, caplog):
    cfg = Config(worker={"data_dir": str(tmp_path / "d")})
    with caplog.at_level(logging.WARNING):
        a = signer_for(cfg)
    assert "worker.record_secret" in caplog.text
    [key_file] = list((tmp_path / "d").iterdir())
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    b = signer_for(cfg)  # a restart of the same worker keeps its key
    assert b.verify("alerts", b"a1", VALUE, a.headers("alerts", b"a1", VALUE))
    other = signer_for(Config(worker={"data_dir": str(tmp_path / "e")}))
    assert not other.verify("alerts", b"a1", VALUE, a.headers("alerts", b"a1", VALUE))


def _failures() -> tuple[RecordMetrics, CollectorRegistry]:
    reg = CollectorRegistry()
    return RecordMetrics.create(reg), reg


def test_dlq_writer_retries_until_written_and_alarms(caplog):
    m, reg = _failures()
    sent: list[tuple] = []
    fails = {"left": 7}

    async def send(key, value, headers):
        if fails["left"]:
            fails["left"] -= 1
            raise ConnectionError("broker down")
        sent.append((key, value, headers))

    w = DeadLetterWriter(send, S, "alerts-dlq", m.dlq_write_failures, alarm_every=3,
                         initial_s=0.001, max_s=0.002)
    with caplog.at_level(logging.ERROR):
        asyncio.run(w({"alert_id": "a\n1", "reason": "invalid_alert"}))
    [(key, value, headers)] = sent
    assert S.verify("alerts-dlq", key, value, headers)
    assert reg.get_sample_value("distillwatch_dlq_write_failures_total") == 2
    assert "still retrying" in caplog.text and "a\n1" not in caplog.text


def test_dlq_writer_gives_up_only_when_stopping(caplog):
    m, reg = _failures()

    async def send(key, value, headers):
        raise ConnectionError("broker down")

    w = DeadLetterWriter(send, S, "alerts-dlq", m.dlq_write_failures, alarm_every=2,
                         initial_s=0.001, max_s=0.001)

    async def main():
        task = asyncio.ensure_future(w({"alert_id": "a1"}))
        await asyncio.sleep(0.1)
        assert not task.done()  # does not move past the record
        w.stopping = True
        await asyncio.wait_for(task, 1)

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
    assert "LOST" in caplog.text
    assert reg.get_sample_value("distillwatch_dlq_write_failures_total") >= 2


def _alert(**over):
    base = {"alert_id": "a1", "state": "opened", "entity_type": "account",
            "entity_id": "acct", "detector": "account_extraction", "severity": "warning",
            "ts": 1.0, "score": 9.0, "threshold": 6.0}
    return {**base, **over}


@pytest.mark.parametrize(
    "change,field",
    [
        (_alert(severity="catastrophic"), "severity"),
        (_alert(severity=None), "severity"),
        (_alert(state="reopened"), "state"),
        (_alert(entity_type="org"), "entity_type"),
        (_alert(alert_id=""), "alert_id"),
        (_alert(alert_id=["a"]), "alert_id"),
        (_alert(entity_id=5), "entity_id"),
        (_alert(ts="later"), "ts"),
        (_alert(score=float("nan")), "score"),
        (_alert(window_start=float("inf")), "window_start"),
        (_alert(member_count=-1), "member_count"),
        (_alert(members="m1"), "members"),
        (_alert(members=[{"x": 1}]), "members"),
        (_alert(evidence=[1]), "evidence"),
        ({k: v for k, v in _alert().items() if k != "detector"}, "detector"),
    ],
)
def test_invalid_changes_name_the_field(change, field):
    problem = invalid_reason(change)
    assert problem is not None and problem.startswith(field)


def test_valid_change_passes_with_extra_fields():
    assert invalid_reason(_alert(org_id="o1", members=["m1"], member_count=1)) is None


class _Boom(Dispatcher):
    async def submit(self, change):
        raise RuntimeError("bug in a sink's setup")


def _intake(dispatcher_cls=Dispatcher):
    reg = CollectorRegistry()
    m = RecordMetrics.create(reg)
    dlq: list[dict] = []

    async def write(rec):
        dlq.append(rec)

    sink = ListSink()
    runner = SinkRunner(sink, SinkMetrics.create(reg))
    d = dispatcher_cls([runner], dlq=write, metrics=runner.metrics)
    return AlertIntake(d, write, S, "alerts", m), dlq, reg, runner, sink


def test_intake_dead_letters_each_kind_and_delivers_the_rest():
    intake, dlq, reg, runner, sink = _intake()

    def signed(value: bytes, key: bytes = b"k"):
        return key, value, S.headers("alerts", key, value)

    async def main():
        await runner.start()
        await intake.handle(b"k", VALUE, None)  # unsigned
        await intake.handle(b"k", None, GOOD)  # tombstone
        await intake.handle(*signed(b"\x00not json"))
        await intake.handle(*signed(b"[]"))
        await intake.handle(*signed(orjson.dumps(_alert(severity="catastrophic"))))
        env = await intake.handle(*signed(orjson.dumps(_alert())))
        await runner.join()
        await runner.stop(0.1)
        return env

    env = asyncio.run(main())
    assert env is not None and [e.alert_id for e in sink.items] == ["a1"]
    assert [d["reason"] for d in dlq] == [
        "bad_signature", "bad_signature", "not_json", "not_object", "invalid_alert"]
    assert "alert" not in dlq[0] and dlq[0]["payload_size"] == len(VALUE)
    for reason, n in {"bad_signature": 2, "not_json": 1, "invalid_alert": 1}.items():
        assert reg.get_sample_value("distillwatch_records_rejected_total",
                                    {"topic": "alerts", "reason": reason}) == n


def test_intake_survives_a_dispatcher_exception():
    intake, dlq, _, _, _ = _intake(_Boom)
    value = orjson.dumps(_alert())
    asyncio.run(intake.handle(b"k", value, S.headers("alerts", b"k", value),
                              partition=0, offset=9))
    [rec] = dlq
    assert rec["reason"] == "dispatch_error" and rec["error"] == "RuntimeError"
    assert rec["offset"] == 9 and rec["alert"]["alert_id"] == "a1"


def test_secret_and_file_together_is_a_config_error(tmp_path):
    from streams.config import ConfigError

    f = tmp_path / "secret"
    f.write_text(KEY.decode())
    with pytest.raises(ConfigError, match="record_secret"):
        load_config(None, {"DISTILLWATCH_WORKER__RECORD_SECRET": "x" * 32,
                           "DISTILLWATCH_WORKER__RECORD_SECRET_FILE": str(f)})
