"""Shared fixtures: a real Tansu broker on a free port, and real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.broker import EmbeddedBroker, free_port
from streams.config import TopicsConfig

# Small windows so an integration test sees many windows close in seconds.
FAST_WORKER_ENV = {
    "DISTILLWATCH_WINDOWS__SIZE_S": "2",
    "DISTILLWATCH_WINDOWS__LATENESS_S": "1",
    "DISTILLWATCH_DETECTION__ACCOUNT_GRACE": "5",
    "DISTILLWATCH_DETECTION__QUIET_WINDOWS": "3",
    # One shared record key, as production must have: workers reject each other's records
    # when each generates its own.
    "DISTILLWATCH_WORKER__RECORD_SECRET": "test-record-secret-0123456789abcdef",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files that wait on a broker run first. ``make test`` spreads files over two processes
    (pytest-xdist, ``--dist loadfile``); a slow file handed out last would be the run's whole
    tail. The sort is stable: order inside a file, and among the rest, is kept."""
    slow = {
        item.path
        for item in items
        if item.get_closest_marker("integration") or "broker" in getattr(item, "fixturenames", ())
    }
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(topics=TopicsConfig().layout()) as b:
        yield b


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class WorkerProcess:
    """A ``distillwatch worker`` subprocess with its own consumer group and metrics port."""

    def __init__(self, broker: EmbeddedBroker, tmp: Path, env: dict[str, str]) -> None:
        self.metrics_port = free_port()
        self.log_path = tmp / f"worker-{uuid.uuid4().hex[:6]}.log"
        full_env = {
            **os.environ,
            **FAST_WORKER_ENV,
            "DISTILLWATCH_WORKER__APP_ID": f"dw-test-{uuid.uuid4().hex[:8]}",
            "DISTILLWATCH_WORKER__DATA_DIR": str(tmp / "data"),
            **env,
        }
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "worker",
                "--broker",
                broker.url,
                "--metrics-port",
                str(self.metrics_port),
            ],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=2) as r:
            return r.read().decode()

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """Value of one sample from /metrics (None when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        for fam in text_string_to_metric_families(self.metrics_text()):
            for s in fam.samples:
                if s.name == name and (labels is None or all(
                    s.labels.get(k) == v for k, v in labels.items()
                )):
                    return float(s.value)
        return None

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            try:
                self.metrics_text()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"worker metrics not up in {timeout}s:\n{self.log()}")

    def diagnosis(self) -> str:
        """What a failed wait needs: the worker's own counters and gauges, then its log."""
        try:
            lines = [
                ln for ln in self.metrics_text().splitlines()
                if ln.startswith("distillwatch_") and "_bucket{" not in ln
            ]
        except OSError as err:
            lines = [f"(metrics unreadable: {err})"]
        return "metrics:\n" + "\n".join(lines) + "\nworker log:\n" + self.log()

    def log(self, tail: int | None = 5000) -> str:
        """The worker's output: its last ``tail`` characters, or all of it."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


@pytest.fixture
def worker_factory(
    broker: EmbeddedBroker, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        w = WorkerProcess(broker, tmp_path, env)
        started.append(w)
        w.wait_ready()
        return w

    yield start
    for w in started:
        w.stop()


def produce(broker: EmbeddedBroker, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    try:
        for key, value in records:
            p.send(topic, key=key, value=value)
        p.flush()
    finally:
        p.close()


def read_topic(
    broker: EmbeddedBroker,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning (no consumer group) until ``until(records)`` holds or
    the timeout passes; return every JSON record read."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=300).values():
                out.extend(orjson.loads(r.value) for r in recs)
            if until(out):
                break
        return out
    finally:
        c.close()


def isolated_topics(prefix: str | None = None) -> tuple[TopicsConfig, dict[str, str]]:
    """Fresh topic names for one test (the broker is shared by the session) and the
    environment that points a worker at them."""
    prefix = prefix or uuid.uuid4().hex[:8]
    base = TopicsConfig()
    fields = [f for f in TopicsConfig.model_fields if f != "partitions"]
    names = {f: f"{prefix}-{getattr(base, f)}" for f in fields}
    env = {f"DISTILLWATCH_TOPICS__{f.upper()}": v for f, v in names.items()}
    return TopicsConfig(**names), env
