"""A real Prometheus scrapes a real worker during a campaign; every PromQL expression of the
dashboards and the rules runs through its HTTP API.

Prometheus (Debian package `prometheus`, installed by `make test`) is started by this test on
127.0.0.1 with a temporary config: scrape and rule evaluation every second, the worker as
the only target of job `distillwatch`, and the rules of deploy/prometheus/rules. Its alerts
go to a real Alertmanager (Debian `prometheus-alertmanager`) running the shipped
deploy/alertmanager/alertmanager.yml, whose Slack URL points at a local receiver. Packaged
system services, if any, are neither used nor touched (own ports, own data directories).
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import math
import os
import random
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streams.broker import free_port
from tests.conftest import isolated_topics, produce, read_topic, stop_process
from tests.observability.promql import ROOT, RULE_FILES, Expr, all_exprs, tool

pytestmark = pytest.mark.integration

WINDOW_S = 2.0

# Queries that may return no series in this run, and why. Everything else must return data.
MAY_BE_EMPTY = {
    # Nothing is dead-lettered, decided or back-pressured in a healthy run: labelled
    # counters have no series until their first increment.
    "distillwatch_sink_dead_lettered_total": "no delivery fails in this run",
    "distillwatch_sink_actions_total": "the suspension hook is not configured here",
    "distillwatch_faust_rebalance_seconds_bucket": "a first join is not a completed rebalance",
    # Rules select failures; in a healthy run their conditions are false (empty result).
}


class SlackReceiver:
    """A local stand-in for Slack's incoming-webhook endpoint: records every POSTed JSON."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/x"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager:
    """deploy/alertmanager/alertmanager.yml as shipped, with the Slack URL pointed at a
    local receiver and the grouping waits shortened to a second."""

    def __init__(self, tmp: Path, slack_url: str) -> None:
        cfg = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
        cfg["global"].pop("slack_api_url_file")
        cfg["global"]["slack_api_url"] = slack_url
        cfg["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
        (tmp / "alertmanager.yml").write_text(json.dumps(cfg))
        self.port = free_port()
        self.log_path = tmp / "alertmanager.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                tool("prometheus-alertmanager"),
                f"--config.file={tmp / 'alertmanager.yml'}",
                f"--storage.path={tmp / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip port: a single test instance
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        raise AssertionError(f"alertmanager not ready:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


class Prometheus:
    def __init__(self, tmp: Path, targets: list[str], alertmanager: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "900ms"},
            "rule_files": [str(p) for p in RULE_FILES],
            "scrape_configs": [
                {"job_name": "distillwatch", "static_configs": [{"targets": targets}]}
            ],
        }
        if alertmanager:
            cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
        # JSON is YAML.
        (tmp / "prometheus.yml").write_text(json.dumps(cfg))
        self.log_path = tmp / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as err:  # 400 = bad query: the body says why
            return json.loads(err.read())

    def query(self, promql: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=promql)

    def values(self, promql: str) -> list[float]:
        res = self.query(promql)
        assert res["status"] == "success", res
        return [float(s["value"][1]) for s in res["data"]["result"]]

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready in {timeout}s:\n{self.log()}")

    def wait_for(self, promql: str, ok: Callable[[list[float]], bool], timeout: float = 30.0,
                 ) -> list[float]:
        deadline = time.monotonic() + timeout
        vals: list[float] = []
        while time.monotonic() < deadline:
            vals = self.values(promql)
            if ok(vals):
                return vals
            time.sleep(0.5)
        raise AssertionError(f"{promql} never satisfied the check; last {vals}\n{self.log()}")

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


@pytest.fixture
def slack_alertmanager(tmp_path: Path) -> Iterator[tuple[SlackReceiver, Alertmanager]]:
    tool("prometheus-alertmanager")
    slack = SlackReceiver()
    d = tmp_path / "am"
    d.mkdir()
    am = Alertmanager(d, slack.url)
    yield slack, am
    am.stop()
    slack.stop()


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    started: list[Prometheus] = []

    def start(targets: list[str], alertmanager: str | None = None) -> Prometheus:
        d = tmp_path / f"prom{len(started)}"
        d.mkdir()
        p = Prometheus(d, targets, alertmanager)
        started.append(p)
        p.wait_ready()
        return p

    yield start
    for p in started:
        p.stop()


def _traffic(now: float) -> list[tuple[bytes, bytes]]:
    """40 s of history in 2 s windows: 30 steady benign accounts, one account that ramps 20x
    over the last 8 s (an account alert), and from 8 s on a campaign of 40 two-day-old
    accounts sharing a card and a /24, single-turn, long max-token outputs (a cluster alert).
    """
    rng = random.Random(11)
    start = now - 40.0
    out: list[dict[str, Any]] = []

    def ev(acct: str, w: int, **kw: Any) -> None:
        out.append({
            "event_id": f"e{len(out)}",
            "account_id": acct,
            "ts": start + w * WINDOW_S + rng.random() * WINDOW_S,
            "model": "model-a",
            "tier": "pro",
            **kw,
        })

    for w in range(20):
        for acct in [f"benign-{i}" for i in range(30)] + ["ramp-1"]:
            rate = 80 if acct == "ramp-1" and w >= 16 else 4
            for _ in range(rate + rng.randint(-1, 1)):
                ev(acct, w, input_tokens=rng.randint(50, 200), output_tokens=rng.randint(100, 400))
        if w >= 4:
            for i in range(40):
                for _ in range(2):
                    ev(f"hydra-{i}", w, input_tokens=rng.randint(50, 100),
                       output_tokens=rng.randint(3000, 4000), turn=1, stop_reason="max_tokens",
                       account_created_ts=now - 2 * 86400, ip=f"203.0.113.{i + 1}", asn=64500,
                       payment_fingerprint="card-hydra")
    out.sort(key=lambda e: e["ts"])
    return [(e["account_id"].encode(), orjson.dumps(e)) for e in out]


def _bad(now: float) -> list[tuple[None, bytes]]:
    return [(None, b"{not json"), (None, b"[1, 2]"),
            (None, orjson.dumps({"account_id": "x", "ts": now, "model": "m"}))]


def _check_all(prom: Prometheus, exprs: list[Expr]) -> tuple[list[str], list[str]]:
    """Run every expression; return (errors, empty-but-required)."""
    errors, empty = [], []
    for e in exprs:
        res = prom.query(e.promql)
        if res.get("status") != "success":
            errors.append(f"{e.id}: {res.get('errorType')}: {res.get('error')}\n  {e.promql}")
            continue
        if not e.source.startswith("dashboard:"):
            continue
        result = res["data"]["result"]
        if not result and not any(m in e.promql for m in MAY_BE_EMPTY):
            empty.append(f"{e.id}: {e.promql}")
    return errors, empty


# Panels drawn for docs/oncall.md (grafana/render_panels.py): dashboard → titles.
PICTURES = {
    "overview": ["Active campaigns", "Campaign accounts", "Harvest so far", "Worst open campaigns",
                 "Open alerts by severity", "Detection latency", "Campaign size and harvest",
                 "Events / s", "DLQ share"],
    "accounts": ["Score / threshold by rank", "Worst open accounts (top 10)"],
}


def _render(prom: Prometheus, out: Path, start: float) -> list[Path]:
    spec = importlib.util.spec_from_file_location("render_panels",
                                                  ROOT / "grafana" / "render_panels.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, titles in PICTURES.items():
        d = json.loads((ROOT / "grafana" / "dashboards" / f"{stem}.json").read_text())
        for title, svg in mod.render(d, titles, prom.url, start, time.time()).items():
            path = out / f"{stem}-{mod.slug(title)}.svg"
            path.write_text(svg)
            paths.append(path)
    return paths


def test_every_dashboard_and_rule_query_runs_on_live_prometheus(
    broker, worker_factory, prometheus_factory, slack_alertmanager, tmp_path
):
    tool("prometheus")  # skip (or fail in CI) before starting anything
    slack, am = slack_alertmanager
    t0 = time.time()
    topics, env = isolated_topics()
    worker = worker_factory(**env)
    prom = prometheus_factory([f"127.0.0.1:{worker.metrics_port}"], f"127.0.0.1:{am.port}")
    prom.wait_for('up{job="distillwatch"}', lambda v: v == [1.0])

    now = time.time()
    traffic = _traffic(now)
    produce(broker, topics.requests, traffic + _bad(now))

    def _seen(rs: list[dict[str, Any]]) -> bool:
        kinds = {r["entity_type"] for r in rs if r["state"] == "opened"}
        return {"account", "cluster"} <= kinds

    alerts = read_topic(broker, topics.alerts, until=_seen, timeout=90)
    assert _seen(alerts), f"no account and cluster alert; worker log:\n{worker.log()}"
    campaign = next(a for a in alerts if a["entity_type"] == "cluster")

    # The ranking reaches Prometheus with no entity id in it.
    prom.wait_for('distillwatch_top_entity_info{entity_type="cluster"}', lambda v: v == [1.0])
    prom.wait_for('distillwatch_top_entity_info{entity_type="account"}', lambda v: len(v) >= 1)
    info = prom.query('distillwatch_top_entity_info{entity_type="cluster", rank="1"}')
    labels = info["data"]["result"][0]["metric"]
    assert labels["alert_id"] == campaign["alert_id"]
    assert labels["detector"] == campaign["detector"]
    members = prom.values('max(distillwatch_top_entity_members{entity_type="cluster"})')
    assert 8 <= members[0] <= 40
    series = prom.values('count({job="distillwatch", __name__=~"distillwatch_.+"})')[0]
    ids = prom.query('{job="distillwatch", alert_id=~".*hydra.*|.*ramp.*|.*benign.*"}')
    assert ids["data"]["result"] == []
    print(f"\ndistillwatch series scraped from one worker: {series:.0f}")

    # Let a few scrapes cover the closed windows and every rule evaluate.
    time.sleep(4)
    exprs = all_exprs()
    errors, empty = _check_all(prom, exprs)
    assert not errors, "queries Prometheus rejected:\n" + "\n".join(errors)
    assert not empty, "core panels with no data:\n" + "\n".join(empty)
    # The check itself can fail: a malformed query is reported, not silently empty.
    assert _check_all(prom, [Expr("dashboard:x", "bad", "sum(rate(x[5m])", "sum(rate(x[5m])")])[0]
    print(f"queries run: {len(exprs)}")

    # Spot-check values the on-call overview shows.
    assert prom.values('sum(rate(distillwatch_events_consumed_total{job="distillwatch"}[5m]))'
                       )[0] > 0
    assert prom.values('sum(distillwatch_flagged_entities{entity_type="cluster"})')[0] >= 1
    dlq = prom.values('sum(increase(distillwatch_events_invalid_total[5m]))')[0]
    assert dlq > 0
    p95 = prom.values('histogram_quantile(0.95, sum by (le) '
                      '(rate(distillwatch_finding_latency_seconds_bucket[5m])))')[0]
    assert math.isfinite(p95) and p95 > 0

    # Every rule evaluated without error against the live series.
    groups = prom.get("/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == sum(1 for e in exprs if e.source.startswith("rules:"))
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
    # A critical campaign pages at once (the rule has no `for`), and Alertmanager, with the
    # shipped routing and Slack templates, posts it to the on-call channel.
    if any(a["entity_type"] == "cluster" and a["severity"] == "critical" for a in alerts):
        firing = prom.get("/api/v1/alerts")["data"]["alerts"]
        names = {a["labels"]["alertname"] for a in firing if a["state"] == "firing"}
        assert "DistillwatchCriticalCampaignOpen" in names, firing
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not slack.posts:
            time.sleep(0.5)
        assert slack.posts, f"nothing reached Slack:\n{am.log()}"
        post = slack.posts[0]
        assert post["channel"] == "#distillwatch-oncall"
        att = post["attachments"][0]
        assert att["title"].endswith("DistillwatchCriticalCampaignOpen (1)"), att["title"]
        assert att["text"].startswith("*1 critical campaign(s) open*\n"), att["text"]
        assert "docs/oncall.md#distillwatchcriticalcampaignopen" in att["text"]
        print(f"Slack post: {att['title']!r}\n{att['text']}")
    # And the healthy pipeline pages for nothing else.
    firing = prom.get("/api/v1/alerts")["data"]["alerts"]
    pages = {a["labels"]["alertname"] for a in firing if a["labels"]["severity"] == "page"}
    assert pages <= {"DistillwatchCriticalCampaignOpen"}, pages

    # Pictures of the panels from this run's data (docs/img when DISTILLWATCH_RENDER_DIR
    # points there); every one must be a well-formed SVG with something drawn in it.
    import xml.etree.ElementTree as ET

    out = Path(os.environ.get("DISTILLWATCH_RENDER_DIR") or tmp_path / "render")
    pictures = _render(prom, out, t0)
    assert len(pictures) == sum(len(t) for t in PICTURES.values())
    for path in pictures:
        ET.fromstring(path.read_text())
        assert "No data" not in path.read_text(), path.name
