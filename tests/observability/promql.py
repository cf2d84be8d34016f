"""Every PromQL expression of the dashboards and the rules, and the tools to run them."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))

# Grafana's template variables, replaced the way Grafana would for a 1 s scrape interval
# and "All" workers. $__rate_interval is wide so the burst of test traffic stays in range.
GRAFANA_VARS = {
    "$__rate_interval": "5m",
    "$__interval": "15s",
    "$__range": "5m",
    "$instance": ".*",
    "$rank": "1",
}


@dataclass(frozen=True)
class Expr:
    source: str  # "dashboard:<uid>" or "rules:<file>"
    where: str  # panel title / target ref, or alert name
    expr: str  # as written
    promql: str  # with Grafana variables substituted

    @property
    def id(self) -> str:
        return f"{self.source}:{self.where}"


def substitute(expr: str) -> str:
    out = expr
    # Longest names first: $__rate_interval before $__range and so on.
    for name in sorted(GRAFANA_VARS, key=len, reverse=True):
        out = out.replace(name, GRAFANA_VARS[name])
    return out


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        # Collapsed rows keep their panels inside.
        yield from _panels(p.get("panels") or [])


def dashboard_exprs(path: Path) -> list[Expr]:
    d = json.loads(path.read_text())
    src = f"dashboard:{d['uid']}"
    out = []
    for p in _panels(d.get("panels") or []):
        for t in p.get("targets") or []:
            out.append(Expr(src, f"{p.get('title')}/{t.get('refId')}", t["expr"],
                            substitute(t["expr"])))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        query = v["query"] if isinstance(v["query"], str) else v["query"]["query"]
        # label_values(SELECTOR, label) is Grafana's, not PromQL: its selector is.
        m = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
        expr = m.group(1) if m else query
        out.append(Expr(src, f"variable {v['name']}", query, substitute(expr)))
    # Annotation queries (alert opens) run like panel queries, but may be empty: not "dashboard:".
    for a in d.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append(Expr(f"annotations:{d['uid']}", f"annotation {a['name']}", a["expr"],
                            substitute(a["expr"])))
    return out


def rule_exprs(path: Path) -> list[Expr]:
    doc = yaml.safe_load(path.read_text())
    out = []
    for g in doc["groups"]:
        for r in g["rules"]:
            name = r.get("alert") or r.get("record")
            out.append(Expr(f"rules:{path.name}", name, r["expr"], r["expr"]))
    return out


def all_exprs() -> list[Expr]:
    out = []
    for p in DASHBOARDS:
        out.extend(dashboard_exprs(p))
    for p in RULE_FILES:
        out.extend(rule_exprs(p))
    return out


METRIC_RE = re.compile(r"\b(distillwatch_[a-z0-9_]+)\b")


def metric_names(expr: str) -> set[str]:
    """distillwatch_* series names used in ``expr`` (histogram suffixes stripped)."""
    names = set()
    for n in METRIC_RE.findall(expr):
        for suffix in ("_bucket", "_count", "_sum"):
            if n.endswith(f"_seconds{suffix}"):
                n = n.removesuffix(suffix)
        names.add(n)
    return names


def tool(name: str) -> str:
    """Path of a Prometheus tool; skip when absent outside CI, fail in CI."""
    path = shutil.which(name)
    if path:
        return path
    msg = (f"{name} not found: install the Debian package "
           f"{'prometheus' if name in ('prometheus', 'promtool') else 'prometheus-alertmanager'} "
           "(`make test` does it)")
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)
