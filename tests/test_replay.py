"""replay: the worker's detection path over a file, deterministic, tolerant of bad lines."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from detectors.events import event_from_dict
from detectors.pipeline import Monitor
from streams.cli import main
from streams.config import load_config
from streams.replay import monitor_kwargs

TINY = Path(__file__).parents[1] / "scenarios" / "tiny.toml"
KEYS = {"alert_id", "state", "entity_type", "entity_id", "detector", "severity", "ts", "score",
        "evidence"}


@pytest.fixture(scope="module")
def tiny_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    ev = d / "events.jsonl"
    assert main(["simulate", str(TINY), "--seed", "1", "--out", str(ev)]) == 0
    return ev


def _replay(events: Path, out: Path) -> list[dict]:
    assert main(["replay", str(events), "--out", str(out), "--progress-every", "0"]) == 0
    return [orjson.loads(x) for x in out.read_bytes().splitlines()]


def test_replay_is_deterministic_and_writes_alert_changes(tiny_events: Path, tmp_path: Path):
    a = _replay(tiny_events, tmp_path / "a.jsonl")
    b = _replay(tiny_events, tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert a == b and a, "the tiny scenario (hydra + ramp) should raise at least one alert"
    for c in a:
        assert set(c) >= KEYS
        assert c["state"] in {"opened", "updated", "resolved"}
        assert c["severity"] in {"info", "warning", "critical"}
        if c["entity_type"] == "cluster":
            assert c["member_count"] >= len(c["members"])
    opened = [c["alert_id"] for c in a if c["state"] == "opened"]
    assert len(opened) == len(set(opened))


def test_replay_equals_the_monitor_built_from_the_same_config(tiny_events: Path, tmp_path: Path):
    mon = Monitor(**monitor_kwargs(load_config()))
    expected = []
    for line in tiny_events.read_bytes().splitlines():
        obj = orjson.loads(line)
        expected += mon.add(event_from_dict(obj, now=obj["ts"]))
    expected += mon.flush()
    got = _replay(tiny_events, tmp_path / "a.jsonl")
    assert got == [orjson.loads(orjson.dumps(c)) for c in expected]


def test_replay_follows_the_config(tiny_events: Path, tmp_path: Path, monkeypatch) -> None:
    base = _replay(tiny_events, tmp_path / "a.jsonl")
    monkeypatch.setenv("DISTILLWATCH_WINDOWS__SIZE_S", "300")
    wide = _replay(tiny_events, tmp_path / "b.jsonl")
    assert {c["window_end"] - c["window_start"] for c in wide} == {300.0}
    assert base != wide


def test_invalid_lines_are_counted_and_old_files_accepted(tmp_path: Path, capsys) -> None:
    old = 1_000_000_000.0  # 2001: far more than the worker's max_past_s ago
    good = [{"account_id": "a", "ts": old + i, "model": "m", "input_tokens": 1,
             "output_tokens": 2} for i in range(50)]
    lines = [orjson.dumps(e) for e in good[:25]] + [
        b"{not json", b"[1, 2]", b'{"account_id": "a", "ts": 1, "model": "m"}',
        orjson.dumps({"account_id": "a", "ts": old, "model": "m", "input_tokens": -1,
                      "output_tokens": 1}),
        b"",
    ] + [orjson.dumps(e) for e in good[25:]]
    src = tmp_path / "e.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["replay", str(src), "--out", str(tmp_path / "a.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "50 events" in err
    assert "skipped 4 invalid line(s) of 54" in err
    for reason in ("not_json", "not_object", "missing_field", "bad_tokens"):
        assert f"{reason}: 1 (first: line " in err


@pytest.mark.integration
def test_replay_equals_worker(broker, worker_factory, tmp_path: Path) -> None:
    """The tiny scenario through the broker and a real worker raises the same alerts (by id)
    as replay over the same events with the same configuration."""
    import time

    from simulator.generate import generate
    from simulator.produce import shift
    from simulator.scenario import load_scenario
    from simulator.writer import account_ids, write_events
    from tests.conftest import FAST_WORKER_ENV, isolated_topics, produce, read_topic

    # One-minute windows as in production.
    env_cfg = {**FAST_WORKER_ENV, "DISTILLWATCH_WINDOWS__SIZE_S": "60"}
    topics, env = isolated_topics()
    worker = worker_factory(**env, **env_cfg)
    sim = generate(load_scenario(TINY), 1)
    # The worker rejects events more than a few days old: end the history a minute ago.
    shift(sim, time.time() - 60 - float(sim.events.ts[-1]))
    events = tmp_path / "events.jsonl"
    with open(events, "wb") as f:
        write_events(sim, f)
    lines = events.read_bytes().splitlines()
    ids = account_ids(sim)
    keys = [ids[a].encode() for a in sim.events.acct.tolist()]
    produce(broker, topics.requests, list(zip(keys, lines, strict=True)))

    mon = Monitor(**monitor_kwargs(load_config(environ=env_cfg)))
    expected = []
    for line in lines:
        obj = orjson.loads(line)
        expected += mon.add(event_from_dict(obj, now=obj["ts"]))
    expected += mon.flush()
    # Windows the worker has surely closed once its watermark passed the last event: compare
    # those (the very last windows close on the worker's wall-clock timer, later).
    cutoff = float(sim.events.ts[-1]) - 180
    want = {c["alert_id"] for c in expected if c["state"] == "opened" and c["window_end"] < cutoff}
    assert want, "the tiny scenario should raise alerts before its last minutes"

    def done(rs: list[dict]) -> bool:
        return want <= {r["alert_id"] for r in rs}

    got_all = read_topic(broker, topics.alerts, until=done, timeout=120)
    got = {r["alert_id"] for r in got_all if r["state"] == "opened" and r["window_end"] < cutoff}
    assert got == want, f"worker log:\n{worker.log()}"
