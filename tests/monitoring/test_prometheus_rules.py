"""The shipped Prometheus rules and Grafana dashboard: promtool accepts and tests the
rules; every metric the rules and the dashboard name is one the server exposes."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import yaml
from helpers import ROOT
from scraping import scrape

PROMETHEUS = ROOT / "packaging" / "prometheus"
DASHBOARD = ROOT / "packaging" / "grafana" / "appliance.json"
METRIC = re.compile(r"\b(?:nv_inference|appliance)_[a-z_]+\b")
ROW = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30],
                   "data": [1.0] * 30}]}


def test_promtool_checks_the_alert_rules(promtool):
    result = subprocess.run([promtool, "check", "rules", str(PROMETHEUS / "alerts.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_promtool_unit_tests_of_the_alert_rules_pass(promtool):
    result = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def exposed(url: str) -> set[str]:
    assert httpx.post(url + "/v2/models/breast_cancer/infer", json=ROW).status_code == 200
    return set(scrape(url))


def test_every_metric_the_alert_rules_use_is_exposed(demo_url):
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    exprs = [r["expr"] for group in rules["groups"] for r in group["rules"]]
    names = {name for expr in exprs for name in METRIC.findall(expr)}
    assert names and names <= exposed(demo_url), names - exposed(demo_url)


def test_the_dashboard_is_json_and_every_expression_uses_exposed_metrics(demo_url):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["definition"])
    names = {name for expr in exprs for name in METRIC.findall(expr)}
    available = exposed(demo_url)
    assert len(names) >= 15 and names <= available, names - available
