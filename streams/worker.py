"""``distillwatch worker``: run the Faust worker against a Kafka broker."""

from __future__ import annotations

import argparse
import logging
import os

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from streams.broker import create_topics
from streams.cluster_topics import ensure_cluster_topics
from streams.config_cmd import config_from_args
from streams.kafka_security import client_kwargs

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker",
        metavar="URL",
        help="kafka://HOST:PORT (overrides broker.url / DISTILLWATCH_BROKER__URL)",
    )
    p.add_argument("--metrics-port", type=int, help="port of /metrics (overrides metrics.port)")
    p.add_argument(
        "--no-create-topics",
        action="store_true",
        help="do not create missing topics at start (when the cluster forbids it)",
    )


def run(args: argparse.Namespace) -> int:
    # CLI flags are one more override layer, applied through the environment so the config
    # is still validated in one place.
    if args.broker:
        os.environ["DISTILLWATCH_BROKER__URL"] = args.broker
    if args.metrics_port is not None:
        os.environ["DISTILLWATCH_METRICS__PORT"] = str(args.metrics_port)
    cfg = config_from_args(args)

    from faust import Worker

    from streams.app import build_app
    from streams.gc_tuning import tune_gc

    if not args.no_create_topics:
        create_topics(
            cfg.broker.bootstrap, cfg.topics.layout(), client_kwargs=client_kwargs(cfg.broker),
            configs=cfg.topics.retention(),
        )
        ensure_cluster_topics(cfg.broker.bootstrap, cfg.worker.app_id, cfg.topics.partitions,
                              client_kwargs=client_kwargs(cfg.broker))
    registry = CollectorRegistry()
    # process_* (memory, CPU, open files) and python_* for the pipeline-health dashboard.
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    server, _thread = start_http_server(cfg.metrics.port, addr=cfg.metrics.host, registry=registry)
    port = server.server_port
    print(f"metrics: http://{cfg.metrics.host}:{port}/metrics", flush=True)
    app = build_app(cfg, registry)
    tune_gc()
    worker = Worker(app, loglevel="INFO" if not args.verbose else "DEBUG", quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        server.shutdown()
    return 0
