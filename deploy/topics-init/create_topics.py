"""Create distillwatch's Kafka topics with the partition counts of its configuration.

Runs once before the workers start: the ``topics-init`` service in
``deploy/docker-compose.yml`` and the init container of ``deploy/k8s/statefulset.yaml``.
It reads the same configuration as the worker (``-c FILE`` or ``DISTILLWATCH_CONFIG``, plus
``DISTILLWATCH_SECTION__FIELD`` variables), so topic names and partition counts cannot drift
from what the workers expect.

Every topic gets ``topics.partitions`` partitions except ``findings``, which gets exactly one:
the alert agent keeps each alert's lifecycle in one place, and the window-close watermarks
it receives must stay in order. The worker's internal topics (the account-state changelog
and Faust's table changelogs, compacted, and Faust's leader-election topic) are created here
too, with ``--replication-factor`` replicas: left to the worker they would get one replica,
and a broker loss would then lose detector state.

The script is idempotent. It never adds partitions to an existing topic: Kafka maps a key to
``hash(key) % partitions``, so growing ``requests`` moves accounts between partitions and
away from their detector state (docs/deployment.md, "Changing the partition count"). When
``requests``, ``findings`` or a changelog topic has another partition count than planned,
the script says so and exits 1; other topics only get a warning.

Usage::

    python deploy/topics-init/create_topics.py -c deploy/config.example.toml \\
        --broker kafka://localhost:29092 --replication-factor 1
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streams.config import Config, ConfigError, load_config

log = logging.getLogger("topics-init")

# Raw requests are what re-processing after a detector change replays (docs/deployment.md):
# keep a week by default; the other topics use the cluster's retention.
DEFAULT_REQUESTS_RETENTION_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicPlan:
    """One topic as the configuration wants it; ``strict`` when a different partition count
    on an existing topic breaks the workers."""

    name: str
    partitions: int
    configs: Mapping[str, str]
    strict: bool


def plan(
    cfg: Config, requests_retention_ms: int = DEFAULT_REQUESTS_RETENTION_MS
) -> list[TopicPlan]:
    """The topics, partition counts and topic configs that ``cfg`` implies. Partition counts
    come from ``TopicsConfig.layout``, the same the worker uses when it creates topics."""
    t = cfg.topics
    out = []
    for name, partitions in t.layout().items():
        configs = {"retention.ms": str(requests_retention_ms)} if name == t.requests else {}
        strict = name in (t.requests, t.findings)
        out.append(TopicPlan(name, partitions, configs, strict))
    return out


def leader_topic(app_id: str) -> str:
    """Faust's leader-election topic for ``app_id`` (faust/assignor/leader_assignor.py)."""
    return f"{app_id}-__assignor-__leader"


def changelog_plan(cfg: Config) -> list[TopicPlan]:
    """The worker's internal topics: the account-state changelog (partitioned like
    ``requests``, docs/state.md), Faust's table changelogs, read from the app itself so a
    new table is covered without editing this script, and Faust's one-partition
    leader-election topic. Building the app opens no connection."""
    from streams.app import build_app
    from streams.sinks.approvals_kafka import approvals_topic
    from streams.sinks.ledger import ledger_topic
    from streams.state import changelog_topic

    app = build_app(cfg)
    out = [
        TopicPlan(
            changelog_topic(cfg.worker.app_id),
            cfg.topics.partitions,
            {"cleanup.policy": "compact"},
            True,
        ),
        TopicPlan(leader_topic(app.conf.id), 1, {}, True),
        # The suspension hook's budget and idempotency memory: one total order, compacted.
        TopicPlan(ledger_topic(cfg.worker.app_id), 1, {"cleanup.policy": "compact"}, True),
        # Pending suspension approvals and their decisions: one order, compacted, never
        # deleted by time (a request may wait for a human over a weekend).
        TopicPlan(approvals_topic(cfg.worker.app_id), 1, {"cleanup.policy": "compact"}, True),
    ]
    for table in app.tables.values():
        topic = table.changelog_topic
        partitions = topic.partitions or app.conf.topic_partitions
        out.append(
            TopicPlan(
                topic.get_topic_name(),
                partitions,
                {"cleanup.policy": "compact", **(topic.config or {})},
                True,
            )
        )
    return out


def _admin(bootstrap: str, wait_s: float, client_kwargs: Mapping[str, Any] | None = None) -> Any:
    """A KafkaAdminClient, retried until the broker answers or ``wait_s`` passes: in
    Kubernetes the init container can start before the Kafka cluster is reachable."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id="distillwatch-topics",
                **(client_kwargs or {}),  # SASL/TLS as the workers (streams/kafka_security.py)
            )
        except KafkaError as err:
            if time.monotonic() >= deadline:
                raise SystemExit(
                    f"topics-init: broker {bootstrap} not reachable within {wait_s}s: {err}"
                ) from None
            log.info("waiting for broker %s: %s", bootstrap, err)
            time.sleep(2.0)


def ensure_topics(
    bootstrap: str,
    wanted: Sequence[TopicPlan],
    replication_factor: int,
    wait_s: float = 60.0,
    client_kwargs: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the missing topics of ``wanted``; return one problem line per topic that is
    missing afterwards or whose partition count differs from the plan (empty when all is well).

    Only ``strict`` topics' counts are problems: ``requests`` (accounts must stay on their
    partition, and Faust's changelog topics are co-partitioned with it) and ``findings`` (one
    partition, in order). Other topics with another count only get a warning."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = _admin(bootstrap, wait_s, client_kwargs)
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(
                p.name,
                num_partitions=p.partitions,
                replication_factor=replication_factor,
                topic_configs=dict(p.configs),
            )
            for p in wanted
            if p.name not in existing
        ]
        for topic in new:
            # One call per topic, so a topic created meanwhile by another pod's init container
            # does not hide the others.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([topic])
            log.info(
                "created topic %s partitions=%s replication=%s",
                topic.name,
                topic.num_partitions,
                replication_factor,
            )
        found = partition_counts(admin, [p.name for p in wanted])
    finally:
        admin.close()
    problems = []
    for p in wanted:
        have = found.get(p.name)
        if have is None:
            problems.append(f"{p.name}: missing after create (check the broker's ACLs)")
        elif have != p.partitions:
            line = (
                f"{p.name}: has {have} partitions, the configuration wants {p.partitions}; "
                "see docs/deployment.md, 'Changing the partition count'"
            )
            if p.strict:
                problems.append(line)
            else:
                log.warning("%s (harmless for this topic)", line)
        else:
            log.info("topic %s ok (%s partitions)", p.name, have)
    return problems


def partition_counts(admin: Any, names: Sequence[str]) -> dict[str, int]:
    """Partitions per existing topic among ``names`` (absent topics are left out)."""
    out: dict[str, int] = {}
    for desc in admin.describe_topics(list(names)):
        if desc.get("error_code", 0) == 0 and desc.get("partitions"):
            # kafka-python 3 names the topic "name"; 2.x said "topic".
            out[desc.get("name") or desc["topic"]] = len(desc["partitions"])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="create_topics.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="TOML config (env DISTILLWATCH_CONFIG)"
    )
    parser.add_argument("--broker", metavar="URL", help="kafka://HOST:PORT (overrides broker.url)")
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=int(os.environ.get("TOPICS_REPLICATION_FACTOR", "1")),
        help="replicas per partition (env TOPICS_REPLICATION_FACTOR; 1 for a one-broker "
        "cluster, 3 in production)",
    )
    parser.add_argument(
        "--requests-retention-ms",
        type=int,
        default=int(
            os.environ.get("TOPICS_REQUESTS_RETENTION_MS", str(DEFAULT_REQUESTS_RETENTION_MS))
        ),
        help="retention of the requests topic, i.e. how far back re-processing can go "
        "(env TOPICS_REQUESTS_RETENTION_MS; default 7 days)",
    )
    parser.add_argument(
        "--wait-s", type=float, default=60.0, help="how long to wait for the broker (seconds)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    environ = dict(os.environ)
    if args.broker:
        environ["DISTILLWATCH_BROKER__URL"] = args.broker
    try:
        cfg = load_config(args.config or environ.get("DISTILLWATCH_CONFIG"), environ)
    except ConfigError as err:
        print(f"topics-init: {err}", file=sys.stderr)
        return 2
    wanted = plan(cfg, args.requests_retention_ms) + changelog_plan(cfg)
    from streams.kafka_security import client_kwargs

    problems = ensure_topics(
        cfg.broker.bootstrap,
        wanted,
        args.replication_factor,
        args.wait_s,
        client_kwargs=client_kwargs(cfg.broker),
    )
    for line in problems:
        print(f"topics-init: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
