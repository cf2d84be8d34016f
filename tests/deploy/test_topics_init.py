"""deploy/topics-init/create_topics.py against a real (Tansu) broker: it creates the topics
the compose services' config names, with one partition for findings, idempotently, and
refuses a requests topic whose partition count differs from the config."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from streams.broker import EmbeddedBroker, free_port
from tests.deploy.manifests import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    Dockerfile,
    compose_env,
    config_for,
    load_yaml,
    parse_volume,
)
from tests.deploy.test_dockerfile import _healthcheck_argv

pytestmark = pytest.mark.integration

SCRIPT = DEPLOY / "topics-init" / "create_topics.py"
# Variables that give a test its own topics and app id (the session broker is shared).
ISOLATED = ("DISTILLWATCH_TOPICS__", "DISTILLWATCH_WORKER__APP_ID")


def _partitions(broker: EmbeddedBroker, topics: list[str]) -> dict[str, int]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        return {
            d["name"]: len(d["partitions"])
            for d in admin.describe_topics(topics)
            if d["error_code"] == 0
        }
    finally:
        admin.close()


def _local_env(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment, with files it names inside the container (``*_FILE``
    variables) replaced by the host files compose would mount there."""
    env = compose_env(service)
    mounts = {m.target: m for m in map(parse_volume, service.get("volumes", []))}
    for key, value in env.items():
        if key.lower().endswith("_file") and value in mounts:
            env[key] = str((DEPLOY / mounts[value].source).resolve())
    return env


def _compose_init_env(prefix: str) -> dict[str, str]:
    """topics-init's environment from the compose file, with the topic names prefixed so this
    test does not collide with others on the shared session broker."""
    env = _local_env(load_yaml(COMPOSE)["services"]["topics-init"])
    cfg = config_for(env, DEPLOY / "config.example.toml")
    for field in type(cfg.topics).model_fields:
        if field != "partitions":
            env[f"DISTILLWATCH_TOPICS__{field.upper()}"] = f"{prefix}-{getattr(cfg.topics, field)}"
    env.pop("DISTILLWATCH_CONFIG")
    # Faust names changelog topics after the app id: isolate those as well.
    env["DISTILLWATCH_WORKER__APP_ID"] = f"{prefix}-{cfg.worker.app_id}"
    return env


def _run(
    broker: EmbeddedBroker, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "-c",
            str(DEPLOY / "config.example.toml"),
            "--broker",
            broker.url,
            "--wait-s",
            "10",
            *args,
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_creates_the_configured_topics_idempotently(broker: EmbeddedBroker) -> None:
    env = _compose_init_env(uuid.uuid4().hex[:8])
    cfg = config_for(env, DEPLOY / "config.example.toml")
    topics = cfg.topics.all()
    assert _partitions(broker, topics) == {}

    first = _run(broker, env)
    assert first.returncode == 0, first.stderr
    want: dict[str, Any] = {t: cfg.topics.partitions for t in topics}
    # findings: one order for the alert agent; alerts: one suspension hook sees them all.
    want[cfg.topics.findings] = 1
    want[cfg.topics.alerts] = 1
    assert _partitions(broker, topics) == want
    # The Faust tables' changelogs too, named after the app id, as Faust will look for them.
    from streams.app import build_app

    app = build_app(cfg)
    changelogs = {
        t.changelog_topic.get_topic_name(): t.changelog_topic.partitions or cfg.topics.partitions
        for t in app.tables.values()
    }
    assert changelogs, "the worker has no Faust table"
    assert _partitions(broker, list(changelogs)) == changelogs
    # The account-state changelog, partitioned like requests (streams/state.py).
    from streams.state import changelog_topic

    account = changelog_topic(cfg.worker.app_id)
    assert _partitions(broker, [account]) == {account: cfg.topics.partitions}
    # Faust's leader topic, under the name Faust itself uses.
    leader = app._leader_assignor._leader_topic_name
    assert _partitions(broker, [leader]) == {leader: 1}
    # The suspension ledger: one partition, so every worker's hook reads one order.
    from streams.sinks.ledger import ledger_topic

    ledger = ledger_topic(cfg.worker.app_id)
    assert _partitions(broker, [ledger]) == {ledger: 1}
    # Pending approvals: one partition too, read by the CLI and the console from any host.
    from streams.sinks.approvals_kafka import approvals_topic

    approvals = approvals_topic(cfg.worker.app_id)
    assert _partitions(broker, [approvals]) == {approvals: 1}

    again = _run(broker, env)
    assert again.returncode == 0, again.stderr
    assert _partitions(broker, topics) == want


def test_refuses_a_requests_topic_with_other_partitions(broker: EmbeddedBroker) -> None:
    env = _compose_init_env(uuid.uuid4().hex[:8])
    assert _run(broker, env).returncode == 0
    cfg = config_for(env, DEPLOY / "config.example.toml")
    env["DISTILLWATCH_TOPICS__PARTITIONS"] = str(cfg.topics.partitions + 4)
    grown = _run(broker, env)
    assert grown.returncode == 1
    # Problems are the lines the script prints itself; log lines carry a timestamp.
    problems = [ln for ln in grown.stderr.splitlines() if ln.startswith("topics-init: ")]
    # requests and the account-state changelog partitioned like it: both must match.
    from streams.state import changelog_topic

    refused = sorted(ln.split(": ")[1] for ln in problems)
    assert refused == sorted([cfg.topics.requests, changelog_topic(cfg.worker.app_id)])
    assert all(f"has {cfg.topics.partitions} partitions" in ln for ln in problems)
    # Topics where the count is harmless only warn.
    assert f"{cfg.topics.actions}: has {cfg.topics.partitions} partitions" in grown.stderr
    assert _partitions(broker, [cfg.topics.requests])[cfg.topics.requests] == cfg.topics.partitions


def test_bad_config_exits_2_naming_the_field(broker: EmbeddedBroker) -> None:
    res = _run(broker, {"DISTILLWATCH_TOPICS__PARTITIONS": "0"})
    assert res.returncode == 2
    assert "topics.partitions" in res.stderr


def test_compose_worker_command_runs_on_the_initialised_topics(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """topics-init, then a worker exactly as compose runs it (`worker --no-create-topics`, the
    example config and the compose environment; only addresses and paths are local): it
    starts, its /metrics passes the image's health check, and it leaves the topics as
    topics-init made them."""
    env = _compose_init_env(uuid.uuid4().hex[:8])
    assert _run(broker, env).returncode == 0
    services = load_yaml(COMPOSE)["services"]
    worker_svc = services["worker-1"]
    port = free_port()
    worker_env = {
        **os.environ,
        **_local_env(worker_svc),
        **{k: v for k, v in env.items() if k.startswith(ISOLATED)},
        "DISTILLWATCH_CONFIG": str(DEPLOY / "config.example.toml"),
        "DISTILLWATCH_BROKER__URL": broker.url,
        "DISTILLWATCH_METRICS__HOST": "127.0.0.1",
        "DISTILLWATCH_METRICS__PORT": str(port),
        "DISTILLWATCH_WORKER__DATA_DIR": str(tmp_path / "state"),
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *worker_svc["command"]],
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            health = _healthcheck_argv(Dockerfile.read(DOCKERFILE))
            deadline = time.monotonic() + 30
            healthy = False
            while time.monotonic() < deadline and proc.poll() is None:
                probe_env = {**os.environ, "DISTILLWATCH_METRICS__PORT": str(port)}
                res = subprocess.run(health, env=probe_env, capture_output=True, timeout=20)
                if res.returncode == 0:
                    healthy = True
                    break
                time.sleep(0.5)
            assert healthy, log_path.read_text(errors="replace")[-3000:]
            time.sleep(3)  # let Faust declare its topics
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        finally:
            # Only start-up is under test; a clean stop mid group-join takes Faust ~10 s.
            proc.kill()
            proc.wait(30)
    cfg = config_for(env, DEPLOY / "config.example.toml")
    assert _partitions(broker, [cfg.topics.findings]) == {cfg.topics.findings: 1}
    assert "Traceback" not in log_path.read_text(errors="replace")


def test_the_approvals_topic_is_planned_compacted_with_one_partition() -> None:
    from streams.config import Config
    from streams.sinks.approvals_kafka import approvals_topic

    sys.path.insert(0, str(DEPLOY / "topics-init"))
    try:
        from create_topics import changelog_plan
    finally:
        sys.path.pop(0)
    cfg = Config()
    [plan] = [p for p in changelog_plan(cfg) if p.name == approvals_topic(cfg.worker.app_id)]
    assert plan.partitions == 1
    assert dict(plan.configs) == {"cleanup.policy": "compact"}
