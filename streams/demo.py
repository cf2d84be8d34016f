"""``distillwatch demo``: the whole pipeline on one machine, with nothing to configure.

Starts the embedded broker, a worker (as a child process, exactly as in production), the
web console (with a one-time password) and a traffic generator: ordinary users, a ramping
account and a small hydra; prints every alert as it fires, with its evidence, and a campaign
alert with its console link; stops on Ctrl-C or after ``--duration`` seconds. Windows are 5 s
(not the production 60 s) so that alerts appear within a minute.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import orjson

from streams.broker import EmbeddedBroker, free_port
from streams.config import TopicsConfig
from streams.demo_traffic import HYDRA_PREFIX, RAMP_ACCOUNT, demo_events
from streams.errors import BrokerError

__all__ = ["add_arguments", "run"]

DEMO_ENV = {
    "DISTILLWATCH_WINDOWS__SIZE_S": "5",
    "DISTILLWATCH_WINDOWS__LATENESS_S": "1",
    "DISTILLWATCH_DETECTION__ACCOUNT_GRACE": "5",
    "DISTILLWATCH_WORKER__APP_ID": "distillwatch-demo",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--duration", type=float, default=300.0, help="seconds to run (default 300; 0 = forever)"
    )
    p.add_argument("--accounts", type=int, default=300, help="benign accounts (default 300)")
    p.add_argument("--port", type=int, default=None, help="broker port (default: a free one)")
    p.add_argument("--metrics-port", type=int, default=9109, help="worker /metrics port")
    p.add_argument("--hydra", type=int, default=36,
                   help="accounts in the demo's campaign (default 36; 0 = none)")
    p.add_argument("--console-port", type=int, default=8088,
                   help="console port (default 8088, else a free one; -1 = no console)")


# The demo's suspension policy: dry-run (nothing is done), and a campaign of more than 20
# accounts waits for a human, so the hydra can be approved in the console.
DEMO_POLICY = """dry_run = true
min_agreeing_detectors = 1
approval_above_members = 20
"""


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _start_console(args: argparse.Namespace, broker_url: str, env: dict[str, str],
                   data_dir: str) -> tuple[subprocess.Popen[bytes] | None, str, str]:
    """The console on 127.0.0.1 with one approver, ``demo``, and a fresh password."""
    from streams.console.auth import hash_password

    if args.console_port < 0:
        return None, "", ""
    port = args.console_port if args.console_port and _port_free(args.console_port) else (
        free_port())
    password = secrets.token_urlsafe(9)
    cfg = os.path.join(data_dir, "console.toml")
    with open(cfg, "w") as f:
        f.write(f'[[console.users]]\nname = "demo"\nrole = "approver"\n'
                f'password_hash = "{hash_password(password, n=2**14)}"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "-c", cfg, "console", "--broker", broker_url,
         "--port", str(port)],
        env={**env, "DISTILLWATCH_CONSOLE__SESSION_SECRET": secrets.token_hex(32)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/", password


def _campaign(a: dict[str, Any], console_url: str) -> str:
    """A cluster alert in a few lines: size, what its members share, the harvest, the link."""
    ev = a.get("evidence", {})
    shared = "; ".join(f"{s.get('kind')} {s.get('key')} ({s.get('members')})"
                       for s in ev.get("shared_attributes", [])[:4])
    harvest = ev.get("harvest", {})
    line = (f"CAMPAIGN {a['state'].upper():8} {a['severity']:8} {a['entity_id']}: "
            f"{a.get('member_count')} accounts acting together, each below any "
            f"per-account limit\n      shared: {shared}\n      harvested so far: "
            f"{harvest.get('output_tokens', 0):,} output tokens in "
            f"{harvest.get('requests', 0):,} requests")
    if console_url and a["state"] != "resolved":
        line += f"\n      open it: {console_url}alerts/{a['alert_id']}"
    return line


def _summary(a: dict[str, Any]) -> str:
    ev = a.get("evidence", {})
    sig = ", ".join(f"{s['signal']}={s['score']}" for s in ev.get("signals", [])[:3])
    feats = ev.get("features", {})
    base = ev.get("baseline", {})
    short = ", ".join(f"{k}={v:g}" for k, v in list(feats.items())[:4])
    line = (
        f"ALERT {a['state'].upper():8} {a['severity']:8} {a['entity_type']}/{a['entity_id']} "
        f"detector={a['detector']} score={a['score']} (threshold {a.get('threshold')})"
    )
    if a["state"] != "resolved":
        line += f"\n      window features: {short}\n      baseline: {base}\n      signals: {sig}"
    return line


def _produce(bootstrap: str, topic: str, accounts: int, hydra: int,
             stop: threading.Event) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    sent = 0
    t0 = time.time()
    try:
        for ev in demo_events(t0, accounts=accounts, hydra=hydra):
            delay = ev["ts"] - time.time()
            if delay > 0 and stop.wait(delay):
                break
            producer.send(topic, key=ev["account_id"].encode(), value=orjson.dumps(ev))
            sent += 1
            if sent % 2000 == 0:
                rate = sent / (time.time() - t0)
                print(f"traffic: {sent} events sent ({rate:.0f}/s)", flush=True)
    finally:
        producer.close()


def run(args: argparse.Namespace) -> int:
    topics = TopicsConfig()
    print("starting the embedded broker (Tansu) ...", flush=True)
    try:
        broker = EmbeddedBroker(args.port, topics=topics.layout()).start()
    except BrokerError as err:
        print(f"distillwatch demo: {err}", file=sys.stderr)
        return 1
    print(f"broker: {broker.url}", flush=True)
    metrics_port = args.metrics_port if args.metrics_port else free_port()
    # A fresh state directory: the embedded broker keeps nothing between runs, so state on
    # disk from an earlier demo would describe a stream that no longer exists.
    data_dir = tempfile.mkdtemp(prefix="distillwatch-demo-")
    env = {**os.environ, **DEMO_ENV, "DISTILLWATCH_WORKER__DATA_DIR": data_dir}
    # One worker: a throw-away record-signing key, so the demo needs no configuration and
    # does not print the multi-worker warning.
    env.setdefault("DISTILLWATCH_WORKER__RECORD_SECRET", secrets.token_hex(32))
    policy = os.path.join(data_dir, "policy.toml")
    with open(policy, "w") as f:
        f.write(DEMO_POLICY)
    env.setdefault("DISTILLWATCH_SINKS__POLICY_FILE", policy)
    env.setdefault("DISTILLWATCH_SINKS__APPROVALS_POLL_S", "1")
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--broker", broker.url,
         "--metrics-port", str(metrics_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(f"worker started (pid {worker.pid}); metrics: http://127.0.0.1:{metrics_port}/metrics")
    console, console_url, password = _start_console(args, broker.url, env, data_dir)
    if console is not None:
        print(f"console: {console_url} (user demo, password {password}); the campaign "
              "can be opened and approved there (dry-run: nothing is suspended)", flush=True)
    print(f"traffic: {args.accounts} benign accounts (Poisson) + {RAMP_ACCOUNT} ramping 20x "
          "after 45 s", flush=True)
    if args.hydra:
        print(f"         + a hydra: {args.hydra} two-day-old accounts ({HYDRA_PREFIX}…) "
              "sharing 3 cards, one /24 and a prompt template, each quieter than an ordinary "
              "user, joining one by one from 60 s", flush=True)
    print("5 s windows; Ctrl-C stops", flush=True)
    stop = threading.Event()
    producer = threading.Thread(
        target=_produce, args=(broker.bootstrap, topics.requests, args.accounts, args.hydra, stop),
        daemon=True,
    )
    producer.start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    t0 = time.time()
    first_alert: float | None = None
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topics.alerts,
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,  # no group: the demo reads everything, every time
    )
    try:
        while not stop.is_set():
            if args.duration and time.time() - t0 >= args.duration:
                break
            if worker.poll() is not None:
                print("distillwatch demo: the worker exited unexpectedly", file=sys.stderr)
                return 1
            for recs in consumer.poll(timeout_ms=500).values():
                for r in recs:
                    alert = orjson.loads(r.value)
                    if first_alert is None:
                        first_alert = time.time() - t0
                        print(f"first alert after {first_alert:.1f} s", flush=True)
                    if alert.get("entity_type") == "cluster":
                        print(_campaign(alert, console_url), flush=True)
                    else:
                        print(_summary(alert), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        consumer.close()
        if console is not None:
            console.send_signal(signal.SIGTERM)
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        if console is not None:
            try:
                console.wait(timeout=10)
            except subprocess.TimeoutExpired:
                console.kill()
        producer.join(timeout=5)
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    took = "none" if first_alert is None else f"{first_alert:.1f} s"
    print(f"demo stopped after {time.time() - t0:.0f} s; time to first alert: {took}")
    return 0
