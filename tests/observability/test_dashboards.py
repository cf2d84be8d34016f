"""Dashboards and rules, statically: generated JSON is fresh, every query is well-formed,
uses only exported and documented metrics, and never an entity id."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.faust_metrics import FaustMetrics, OffsetsCollector, PrometheusMonitor
from streams.metrics import Metrics
from streams.sinks.metrics import SinkMetrics
from streams.topk import TopKCollector, WorstEntities
from tests.observability.promql import (
    DASHBOARDS,
    ROOT,
    all_exprs,
    dashboard_exprs,
    metric_names,
)

EXPRS = all_exprs()


def _families() -> dict[str, str]:
    """Every distillwatch_* metric family a worker can expose: name as exposed → type."""
    reg = CollectorRegistry()
    Metrics.create(reg)
    FaustMetrics.create(reg)
    reg.register(OffsetsCollector(PrometheusMonitor(FaustMetrics.create(CollectorRegistry()))))
    reg.register(TopKCollector(WorstEntities()))
    SinkMetrics.create(reg)
    out = {}
    for fam in reg.collect():
        name = f"{fam.name}_total" if fam.type == "counter" else fam.name
        if name.startswith("distillwatch_"):
            out[name] = fam.type
    return out


def test_there_are_four_dashboards_and_rules():
    assert {p.stem for p in DASHBOARDS} == {"overview", "campaigns", "accounts", "pipeline"}
    assert len(EXPRS) > 60


def test_generated_json_is_up_to_date():
    pytest.importorskip("grafana_foundation_sdk")
    path = ROOT / "grafana" / "build_dashboards.py"
    spec = importlib.util.spec_from_file_location("build_dashboards", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, text in mod.render().items():
        committed = (ROOT / "grafana" / "dashboards" / name).read_text()
        assert committed == text, f"{name} is stale: run python grafana/build_dashboards.py"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_shape(path: Path):
    d = json.loads(path.read_text())
    assert d["uid"].startswith("distillwatch-") and d["title"].startswith("distillwatch / ")
    panels = d["panels"]
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))
        if p["type"] == "row":
            continue
        assert p["title"] and p.get("description"), p
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == "${datasource}"
    ids = [t["refId"] for p in panels for t in p.get("targets", [])]
    assert ids


def test_dashboard_uids_unique():
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("e", EXPRS, ids=lambda e: e.id)
def test_expression_is_concrete_and_bounded(e):
    # Every Grafana variable is one the tests know how to substitute.
    assert "$" not in e.promql, f"unknown Grafana variable in {e.expr!r}"
    # Entities are ranked, never selected or grouped by id.
    assert not re.search(r"\b(entity_id|account_id|ip|fingerprint|org_id)\b", e.promql)
    # Dashboard queries select the worker job; rules may aggregate over everything.
    if e.source.startswith("dashboard:") and "distillwatch_" in e.promql:
        assert 'instance=~".*"' in e.promql, e.expr


def test_every_used_metric_is_exported_and_documented():
    exported = _families()
    doc = (ROOT / "docs" / "metrics.md").read_text()
    used = set().union(*(metric_names(e.promql) for e in EXPRS))
    assert used, "no distillwatch metric used?"
    missing = sorted(n for n in used if n not in exported)
    assert not missing, f"used in dashboards/rules but no worker exports: {missing}"
    # Documented under the exposed name, in a table row with its type.
    undocumented = sorted(
        n for n, typ in exported.items()
        if not re.search(rf"^\| `{n}` \| {typ} \|", doc, re.MULTILINE)
    )
    assert not undocumented, f"exported but not in docs/metrics.md: {undocumented}"


def test_core_dashboard_queries_cover_every_required_view():
    # The on-call overview answers the questions of issue 7 at a glance.
    overview = {e.expr for e in dashboard_exprs(ROOT / "grafana/dashboards/overview.json")}
    text = "\n".join(overview)
    for needle in (
        "distillwatch_alerts_open",  # open alerts by severity
        "distillwatch_flagged_entities",  # active campaigns
        "distillwatch_flagged_members",  # their size
        "distillwatch_flagged_output_tokens",  # harvest so far
        "distillwatch_finding_latency_seconds_bucket",  # detection latency
        "distillwatch_events_consumed_total",  # events/s
        "distillwatch_consumer_lag_messages",  # lag
        "distillwatch_events_invalid_total",  # DLQ rate
        "distillwatch_sink_failed_total",  # sink failures
    ):
        assert needle in text, needle


def test_rules_have_runbooks_that_exist():
    oncall = (ROOT / "docs" / "oncall.md").read_text().lower()
    for path in sorted((ROOT / "deploy/prometheus/rules").glob("*.yml")):
        for g in yaml.safe_load(path.read_text())["groups"]:
            for r in g["rules"]:
                if "alert" not in r:
                    continue
                assert r["labels"]["severity"] in {"page", "ticket"}, r["alert"]
                anchor = r["annotations"]["runbook_url"].split("#", 1)[1]
                # GitHub-style anchors: the heading text lower-cased.
                assert f"### {anchor}" in oncall, f"{r['alert']}: no '### {anchor}' in oncall.md"


# ----------------------------------------------------------- severity, links, annotations

SEVERITY_COLOURS = {"info": "blue", "warning": "orange", "critical": "red"}


def _dashboards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in DASHBOARDS}


def _all_panels(d: dict) -> list[dict]:
    return [p for p in d["panels"] if p.get("type") != "row"]


def _mapping(m: list[dict]) -> dict[str, tuple[str, str]]:
    [vm] = [x for x in m if x["type"] == "value"]
    return {k: (v["text"], v["color"]) for k, v in vm["options"].items()}


def test_numeric_severity_is_shown_as_words_in_fixed_colours():
    """distillwatch_top_entity_severity is 0/1/2: every panel that draws it maps the number to
    its word and colour, and its thresholds colour it the same (never the default green)."""
    found = 0
    for d in _dashboards().values():
        for p in _all_panels(d):
            if not any("top_entity_severity" in t["expr"] for t in p.get("targets", [])):
                continue
            found += 1
            fd = p["fieldConfig"]["defaults"]
            assert _mapping(fd["mappings"]) == {
                "0": ("info", "blue"), "1": ("warning", "orange"), "2": ("critical", "red")
            }, p["title"]
            assert fd["color"]["mode"] == "thresholds", p["title"]
            steps = [(s["value"], s["color"]) for s in fd["thresholds"]["steps"]]
            assert steps == [(None, "blue"), (1.0, "orange"), (2.0, "red")], p["title"]
            assert "green" not in json.dumps(fd), p["title"]
    assert found >= 2  # the accounts dashboard's severity stat and time series


def test_series_and_cells_by_severity_label_have_fixed_colours():
    """A panel with one series per `severity` label colours each series by name; the ranking
    tables show the Severity column as coloured text."""
    series = tables = 0
    for d in _dashboards().values():
        for p in _all_panels(d):
            exprs = " ".join(t["expr"] for t in p.get("targets", []))
            overrides = {o["matcher"]["options"]: o["properties"]
                         for o in p.get("fieldConfig", {}).get("overrides", [])
                         if o["matcher"]["id"] == "byName"}
            if p["type"] == "timeseries" and "sum by (severity)" in exprs:
                series += 1
                for name, colour in SEVERITY_COLOURS.items():
                    [prop] = overrides[name]
                    assert prop == {"id": "color",
                                    "value": {"mode": "fixed", "fixedColor": colour}}, p["title"]
            if p["type"] == "table" and "Severity" in overrides:
                tables += 1
                props = {x["id"]: x["value"] for x in overrides["Severity"]}
                assert _mapping(props["mappings"]) == {
                    k: (k, c) for k, c in SEVERITY_COLOURS.items()}
                assert props["custom.cellOptions"] == {"type": "color-text"}
    assert series >= 3 and tables >= 3


def test_dashboards_link_each_other_and_the_console():
    ds = _dashboards()
    uids = {d["uid"] for d in ds.values()}
    for name, d in ds.items():
        assert "distillwatch" in d["tags"], name  # what the tag link lists
        links = {link["type"]: link for link in d["links"]}
        assert links["dashboards"]["tags"] == ["distillwatch"], name
        assert links["dashboards"]["keepTime"] and links["dashboards"]["includeVars"], name
        assert links["link"]["url"] == "${console_url}/", name
        [var] = [v for v in d["templating"]["list"] if v["name"] == "console_url"]
        assert var["type"] == "textbox" and var["query"].startswith("http"), name
    assert len(uids) == 4
    # Alert ids in the ranking tables open the alert's console page (the console's route).
    for name in ("overview", "campaigns", "accounts"):
        text = json.dumps(ds[name])
        assert "${console_url}/alerts/${__value.raw}" in text, name


def test_alert_opens_are_annotated_from_the_alerts_counter():
    families = _families()
    assert families.get("distillwatch_alerts_total") == "counter"
    for name, d in _dashboards().items():
        anns = {a["name"]: a for a in d["annotations"]["list"] if "expr" in a}
        assert set(anns) == {f"Alert opens: {s}" for s in SEVERITY_COLOURS}, name
        for sev, colour in SEVERITY_COLOURS.items():
            a = anns[f"Alert opens: {sev}"]
            assert a["iconColor"] == colour and a["datasource"]["type"] == "prometheus"
            assert "increase(distillwatch_alerts_total{" in a["expr"], a["expr"]
            assert 'state="opened"' in a["expr"] and f'severity="{sev}"' in a["expr"]
            assert a["enable"] is (sev != "info")
            assert a["titleFormat"] == "{{detector}}" and a["step"] == "1m"
