"""simulate --broker: every event reaches the requests topic, keyed by account, shifted to now."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from simulator.generate import generate
from simulator.scenario import load_scenario
from streams.cli import main
from tests.conftest import isolated_topics, read_topic

pytestmark = pytest.mark.integration

TINY = Path(__file__).parents[2] / "scenarios" / "tiny.toml"


def test_simulate_to_broker(broker, tmp_path: Path, capsys) -> None:
    topics, _ = isolated_topics()
    from streams.broker import create_topics

    create_topics(broker.bootstrap, {topics.requests: 4})
    n = len(generate(load_scenario(TINY), 2).events)
    before = time.time()
    labels = tmp_path / "labels.jsonl"
    rc = main(["simulate", str(TINY), "--seed", "2", "--broker", broker.url,
               "--topic", topics.requests, "--labels", str(labels)])
    assert rc == 0
    err = capsys.readouterr().err
    assert f"produced {n:,} events" in err and "events/s" in err and "produce [" in err
    got = read_topic(broker, topics.requests, until=lambda rs: len(rs) >= n, timeout=60)
    assert len(got) == n
    # Unpaced, so the history ends "now" (nothing from the future for the worker to reject).
    last = max(e["ts"] for e in got)
    assert before - 1 <= last <= time.time() + 1
    # The labels carry the same shift.
    scen = orjson.loads(labels.read_text().splitlines()[0])
    assert abs(scen["end_ts"] - last) < 3600
    assert all(scen["start_ts"] <= e["ts"] < scen["end_ts"] for e in got)


def test_speed_paces_event_time(broker, tmp_path: Path) -> None:
    """At --speed 3600 one hour of event time takes about a second of wall time."""
    scen = tmp_path / "s.toml"
    scen.write_text(
        '[scenario]\nname = "s"\nstart = 2026-01-05T00:00:00Z\nduration_h = 2\n'
        "[benign]\naccounts = 5\nsessions_per_day = 20\n"
    )
    topics, _ = isolated_topics()
    from streams.broker import create_topics

    create_topics(broker.bootstrap, {topics.requests: 1})
    sim = generate(load_scenario(scen), 1)
    span = float(sim.events.ts[-1] - sim.events.ts[0])
    t0 = time.monotonic()
    t_start = time.time()
    assert main(["simulate", str(scen), "--seed", "1", "--broker", broker.url, "--topic",
                 topics.requests, "--speed", "3600"]) == 0
    took = time.monotonic() - t0
    assert took >= span / 3600 * 0.9
    got = read_topic(broker, topics.requests, until=lambda rs: len(rs) >= len(sim.events),
                     timeout=30)
    # Paced, so the history starts "now".
    assert abs(min(e["ts"] for e in got) - t_start) < 5
