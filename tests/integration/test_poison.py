"""Poison records on a real broker (issue 11): each one used to kill the worker and, never
committed, kill it again after every restart. Now each is dead-lettered with its reason, the
log stays one bounded line per record, and the valid events behind them are processed."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.conftest import isolated_topics, produce, read_topic

pytestmark = pytest.mark.integration

MAX_LOG_LINE = 2000


def _event(now: float, account: str, **over: object) -> dict[str, object]:
    return {"account_id": account, "ts": now, "model": "m", "input_tokens": 10,
            "output_tokens": 20, **over}


def _poison(now: float) -> list[tuple[str, bytes | None]]:
    ok = orjson.dumps(_event(now, "p"))
    return [
        ("null_value", None),
        ("bad_encoding", ok[:-1] + b',"user_agent":"bad \xff\xfe utf8"}'),
        ("too_deep", ok[:-1] + b',"extra":' + b"[" * 1000 + b"]" * 1000 + b"}"),
        # Two events of one account in one window: the sum used to overflow at close.
        ("out_of_range", orjson.dumps(_event(now, "overflow", output_tokens=1e308))),
        ("out_of_range", orjson.dumps(_event(now + 0.1, "overflow", output_tokens=1e308))),
        # 60 KB value with a forged log line in it: neither may reach the log.
        ("out_of_range", orjson.dumps(
            _event(now, "big", model="\n2099-01-01 WARNING FORGED-LINE " + "v" * 60_000))),
        ("wrong_type", orjson.dumps(
            _event(now, "forge", ts="\n[2099] CRITICAL FORGED-LINE \x1b[2J"))),
    ]


def test_poison_records_are_dead_lettered_and_the_worker_goes_on(broker, worker_factory):
    topics, env = isolated_topics()
    worker = worker_factory(DISTILLWATCH_TOPICS__PARTITIONS="1", **env)
    now = time.time()
    poison = _poison(now - 6)
    # Valid events after the poison, over a few 2 s windows, so windows must close past it.
    valid = [orjson.dumps(_event(now - 6 + i * 0.5, f"ok-{i % 3}", event_id=f"v{i}"))
             for i in range(10)]
    produce(broker, topics.requests,
            [(b"k", v) for _, v in poison] + [(b"k", v) for v in valid])

    dlq = read_topic(broker, topics.requests_dlq, until=lambda rs: len(rs) >= len(poison),
                     timeout=40)
    assert sorted(r["reason"] for r in dlq) == sorted(r for r, _ in poison), worker.log()
    by_reason = {r["reason"]: r for r in dlq}
    assert by_reason["null_value"]["payload_b64"] is None
    assert by_reason["too_deep"]["payload_size"] > 2000
    for r in dlq:
        assert len(r["message"]) <= 220 and "\n" not in r["message"]

    # Valid events behind the poison are counted, and windows close past them.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (worker.metric("distillwatch_events_valid_total") == len(valid)
                and (worker.metric("distillwatch_windows_closed_total") or 0) >= 2):
            break
        time.sleep(0.5)
    assert worker.metric("distillwatch_events_valid_total") == len(valid), worker.log()
    assert worker.metric("distillwatch_windows_closed_total") >= 2
    assert worker.metric("distillwatch_events_invalid_total", {"reason": "too_deep"}) == 1
    assert worker.metric("distillwatch_events_invalid_total", {"reason": "null_value"}) == 1
    assert worker.metric("distillwatch_detect_errors_total") == 0
    assert worker.proc.poll() is None, f"worker died:\n{worker.log()}"

    log = worker.log()
    lines = log.splitlines()
    assert max(map(len, lines)) <= MAX_LOG_LINE
    assert "\x1b" not in log
    forged = [line for line in lines if "FORGED-LINE" in line]
    assert forged, "the rejection of the forging record should be logged (escaped)"
    for line in forged:  # only inside the escaped rejection message
        assert "rejected event" in line, line
