"""``distillwatch demo``: the whole pipeline on one machine, with nothing to configure.

Starts the embedded broker, a worker (as a child process, exactly as in production) and a
traffic generator; prints every alert as it fires, with its evidence; stops on Ctrl-C or
after ``--duration`` seconds. Windows are 5 s (not the production 60 s) so that alerts appear
within a minute.
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
from streams.demo_traffic import RAMP_ACCOUNT, demo_events
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


def _produce(bootstrap: str, topic: str, accounts: int, stop: threading.Event) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    sent = 0
    t0 = time.time()
    try:
        for ev in demo_events(t0, accounts=accounts):
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
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--broker", broker.url,
         "--metrics-port", str(metrics_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(f"worker started (pid {worker.pid}); metrics: http://127.0.0.1:{metrics_port}/metrics")
    print(f"traffic: {args.accounts} benign accounts (Poisson) + {RAMP_ACCOUNT} ramping 20x "
          "after 45 s; 5 s windows; Ctrl-C stops", flush=True)
    stop = threading.Event()
    producer = threading.Thread(
        target=_produce, args=(broker.bootstrap, topics.requests, args.accounts, stop), daemon=True
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
                    print(_summary(alert), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        consumer.close()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        producer.join(timeout=5)
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    took = "none" if first_alert is None else f"{first_alert:.1f} s"
    print(f"demo stopped after {time.time() - t0:.0f} s; time to first alert: {took}")
    return 0
