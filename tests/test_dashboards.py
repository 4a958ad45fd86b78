"""The Grafana dashboard and the Prometheus alert rules: promtool checks and unit-tests the rules
(Debian's prometheus package, installed by scripts/setup.sh), and every query in either names
only metrics, and labels, that gomailpy exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import api.app  # noqa: F401  (registers whatever the API exports)
import pipeline.main  # noqa: F401  (the same for the pipeline nodes)
from gomailpy import metrics

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "config" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "config" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "docs" / "grafana" / "gomailpy.json"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
}
# A metric and the label matchers right after it: name{a="x", b=~"y"}
SELECTOR = re.compile(r"\b(gomailpy_[a-zA-Z0-9_]+)\s*(\{[^}]*\})?")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: run scripts/setup.sh (it installs Debian's prometheus)"
    return found


def exported() -> dict[str, set[str]]:
    """Every series name gomailpy exports, with the label names it carries."""
    labels = {
        m._name: set(m._labelnames)
        for m in vars(metrics).values()
        if isinstance(m, MetricWrapperBase)
    }
    names: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("gomailpy_"):
            continue
        base = family.name
        for suffix in SUFFIXES.get(family.type, ("",)):
            names[base + suffix] = labels.get(base, set()) | (
                {"le"} if suffix == "_bucket" else set()
            )
    return names


def dashboard_queries() -> list[str]:
    def walk(panels: list[dict[str, Any]]) -> list[str]:
        found = []
        for panel in panels:
            found += [t["expr"] for t in panel.get("targets", [])]
            found += walk(panel.get("panels", []))
        return found

    return walk(json.loads(DASHBOARD.read_text())["panels"])


def rule_queries() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_the_alert_rules_are_valid_and_pass_their_unit_tests() -> None:
    tool = promtool()
    checked = subprocess.run(
        [tool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULE_TESTS.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {rule["alert"] for group in rules for rule in group["rules"]}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == fired


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_queries_name_only_metrics_and_labels_the_code_exports(source: str) -> None:
    queries = dashboard_queries() if source == "dashboard" else rule_queries()
    assert queries
    known = exported()
    for query in queries:
        selectors = SELECTOR.findall(query)
        assert selectors, f"no gomailpy metric in {query!r}"
        for name, matchers in selectors:
            assert name in known, f"{name} (in {query!r}) is not exported"
            for label in MATCHER.findall(matchers):
                assert label in known[name], f"{name} has no label {label!r} (in {query!r})"


def test_the_dashboard_covers_what_an_operator_watches() -> None:
    queries = " ".join(dashboard_queries())
    for metric in (
        "gomailpy_emails_enqueued_total",
        "gomailpy_provider_sends_total",
        "gomailpy_emails_failed_total",
        "gomailpy_queue_messages_visible",
        "gomailpy_queue_oldest_message_age_seconds",
        "gomailpy_provider_send_duration_seconds_bucket",
        "gomailpy_provider_healthy",
        "gomailpy_provider_rate_limit",
        "gomailpy_provider_bounce_rate",
        "gomailpy_provider_complaint_rate",
        "gomailpy_engagement_events_total",
    ):
        assert metric in queries, metric
    for kind in ("opened", "clicked", "unsubscribed", "complained"):  # rates per provider
        assert f'type="{kind}", machine="false"' in queries, kind
    assert "histogram_quantile(0.99" in queries
