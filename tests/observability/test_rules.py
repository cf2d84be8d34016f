"""The Prometheus rules and the Alertmanager example, checked by the real tools."""

from __future__ import annotations

import subprocess

from tests.observability.promql import ROOT, tool

PROM = ROOT / "deploy" / "prometheus"
AM = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def _run(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_rules_are_valid():
    out = _run(tool("promtool"), "check", "rules", *map(str, PROM.glob("rules/*.yml")))
    assert "SUCCESS" in out


def test_rule_unit_tests_pass():
    out = _run(tool("promtool"), "test", "rules", *map(str, PROM.glob("tests/*.test.yml")))
    assert "SUCCESS" in out


def test_prometheus_example_config_is_valid():
    # --syntax-only: the example names rule files at their container path.
    _run(tool("promtool"), "check", "config", "--syntax-only", str(PROM / "prometheus.yml"))


def test_alertmanager_config_is_valid_and_routes_by_severity():
    amtool = tool("amtool")
    _run(amtool, "check-config", str(AM))
    routes = {
        sev: _run(amtool, "config", "routes", "test", f"--config.file={AM}",
                  f"severity={sev}", "alertname=DistillwatchWorkerDown").split()[-1]
        for sev in ("page", "ticket")
    }
    assert routes == {"page": "slack-oncall", "ticket": "slack-team"}
