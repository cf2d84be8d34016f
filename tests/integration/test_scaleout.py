"""Scale-out keeps campaigns whole: one worker and three workers in one group raise every
campaign of ``replay`` with the same id and (nearly) the same members, and no other one.

The scenario (scenarios/scaleout.toml) has a 120-account hydra and a 24-account one; its
accounts hash to every ``requests`` partition, so with three workers each account stage sees
about a third of each campaign. Before the cluster stages (issue 13) three workers cut a
campaign into slices (member Jaccard 0.5 on the tiny scenario).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.config import load_config
from streams.replay import replay_records
from tests.conftest import FAST_WORKER_ENV, isolated_topics, produce, read_topic

pytestmark = pytest.mark.integration

SCENARIO = Path(__file__).parents[2] / "scenarios" / "scaleout.toml"
CAMPAIGN = "cluster_campaign"


def campaign_members(changes: list[dict], cutoff: float) -> dict[str, set[str]]:
    """Members per campaign alert id, over the changes of windows ending before ``cutoff``."""
    out: dict[str, set[str]] = {}
    for c in changes:
        if c["detector"] == CAMPAIGN and c["window_end"] < cutoff:
            out.setdefault(c["alert_id"], set()).update(c.get("members") or [])
    return out


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def scenario_backfill(tmp_path: Path) -> tuple[list[tuple[bytes, bytes]], float]:
    from simulator.generate import generate
    from simulator.produce import shift
    from simulator.scenario import load_scenario
    from simulator.writer import account_ids, write_events

    sim = generate(load_scenario(SCENARIO), 1)
    shift(sim, time.time() - 60 - float(sim.events.ts[-1]))
    path = tmp_path / "events.jsonl"
    with open(path, "wb") as f:
        write_events(sim, f)
    lines = path.read_bytes().splitlines()
    ids = account_ids(sim)
    keys = [ids[a].encode() for a in sim.events.acct.tolist()]
    return list(zip(keys, lines, strict=True)), float(sim.events.ts[-1])


def wait_groups_joined(procs: list, timeout: float = 90.0) -> None:
    """Until the last worker started has joined the ingest and both cluster groups: a join
    completes only when every member has rejoined, so the groups then hold every worker (a
    loaded machine joins slower than any fixed sleep). Tansu's DescribeGroups answer is not
    readable by kafka-python, hence the log."""
    marks = ("cluster-keys stage consumer started", "campaigns stage consumer started",
             "restored state of")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = procs[-1].log(None)
        if all(m in text for m in marks):
            time.sleep(3)  # the other members' assignment callbacks
            return
        time.sleep(0.5)
    raise AssertionError("the last worker did not join its consumer groups")


def replay_changes(records: list[tuple[bytes, bytes]], env: dict[str, str]) -> list[dict]:
    return replay_records(load_config(environ=env), records)


def matches_replay(want: dict[str, set[str]], cutoff: float) -> Callable[[list[dict]], bool]:
    """Until-predicate for read_topic: every replay campaign raised, members Jaccard >= 0.95."""

    def done(rs: list[dict]) -> bool:
        got = campaign_members(rs, cutoff)
        return set(want) <= set(got) and all(
            jaccard(got[cid], want[cid]) >= 0.95 for cid in want
        )

    return done


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_raise_the_replay_campaigns(broker, worker_factory, tmp_path, workers) -> None:
    env_cfg = {**FAST_WORKER_ENV, "DISTILLWATCH_WINDOWS__SIZE_S": "60"}
    records, last_ts = scenario_backfill(tmp_path)
    # Windows the workers have surely closed once their watermark passed the last event.
    cutoff = last_ts - 180
    want = campaign_members(replay_changes(records, env_cfg), cutoff)
    assert len(want) >= 2, "the scenario should raise both campaigns in replay"

    topics, env = isolated_topics()
    env["DISTILLWATCH_WORKER__APP_ID"] = f"dw-scale-{uuid.uuid4().hex[:6]}"
    procs = [
        worker_factory(**env, **env_cfg, DISTILLWATCH_WORKER__DATA_DIR=str(tmp_path / f"w{i}"))
        for i in range(workers)
    ]
    # Let the groups settle on all workers before the backfill (a rebalance in the middle
    # drops the moved partitions' events of closed windows as late: the recovery test's
    # subject, not this one's).
    wait_groups_joined(procs)
    produce(broker, topics.requests, records)

    rs = read_topic(broker, topics.alerts, until=matches_replay(want, cutoff), timeout=180)
    got = campaign_members(rs, cutoff)
    logs = "\n".join(p.log()[-3000:] for p in procs)
    assert set(got) == set(want), f"campaigns {sorted(got)} != replay {sorted(want)}\n{logs}"
    for cid, members in want.items():
        assert jaccard(got[cid], members) >= 0.95, (cid, len(got[cid]), len(members))
    opened = [r["alert_id"] for r in rs if r["detector"] == CAMPAIGN and r["state"] == "opened"]
    assert len(opened) == len(set(opened)), "a campaign alert opened twice"


def test_kill_of_the_campaign_assembler_continues_the_campaign(broker, worker_factory,
                                                               tmp_path) -> None:
    """SIGKILL the process that assembles campaigns after a campaign alert opened; its
    successor restores the snapshot, continues the same campaign id with its members, and
    the alert opens exactly once."""
    import os
    import signal

    env_cfg = {**FAST_WORKER_ENV, "DISTILLWATCH_WINDOWS__SIZE_S": "60"}
    records, last_ts = scenario_backfill(tmp_path)
    cutoff = last_ts - 180
    want = campaign_members(replay_changes(records, env_cfg), cutoff)
    topics, env = isolated_topics()
    env["DISTILLWATCH_WORKER__APP_ID"] = f"dw-kill-{uuid.uuid4().hex[:6]}"
    data = str(tmp_path / "w")
    a = worker_factory(**env, **env_cfg, DISTILLWATCH_WORKER__DATA_DIR=data)
    time.sleep(2)
    # The first half of the history (the small campaign under way), the kill, then the rest:
    # the successor must continue that campaign, not start it again.
    split = len(records) // 2
    produce(broker, topics.requests, records[:split])

    def opened(rs: list[dict]) -> bool:
        return any(r["detector"] == CAMPAIGN and r["state"] == "opened" for r in rs)

    first = read_topic(broker, topics.alerts, until=opened, timeout=120)
    assert opened(first), a.log()
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait()
    before = campaign_members(first, float("inf"))
    b = worker_factory(**env, **env_cfg, DISTILLWATCH_WORKER__DATA_DIR=data)
    produce(broker, topics.requests, records[split:])

    rs = read_topic(broker, topics.alerts, until=matches_replay(want, cutoff), timeout=240)
    got = campaign_members(rs, cutoff)
    assert set(got) == set(want), f"{sorted(got)} != {sorted(want)}\n{b.log()}"
    for cid in before:
        assert cid in got and before[cid] <= got[cid] | want[cid], "lost the campaign's members"
    for cid, members in want.items():
        assert jaccard(got[cid], members) >= 0.95, (cid, len(got[cid]), len(members))
    ids = [r["alert_id"] for r in rs if r["detector"] == CAMPAIGN and r["state"] == "opened"]
    assert len(ids) == len(set(ids)), f"a campaign alert opened twice: {ids}"
    assert "campaign assembly restored:" in b.log(None)
