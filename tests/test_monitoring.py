"""Alert rules and dashboards, checked offline: promtool, structure, variables, PromQL."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP / "scripts"))
import monitoring_refs  # noqa: E402

ALERTS = [
    rule for group in monitoring_refs.rule_groups() for rule in group["rules"] if "alert" in rule
]
RUNBOOK_ALERTS = {
    "CodeGraphServiceDown": "1m",
    "CodeGraphHighErrorRate": "5m",
    "CodeGraphHighResponseTime": "10m",
    "CodeGraphHighMemoryUsage": "15m",
}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)


def test_promtool_checks_the_rules_and_their_unit_tests_pass(tmp_path):
    """On the rules rendered with config.yml (tests/test_alert_rules.py: as the role
    renders them, and with overrides)."""
    rules = monitoring_refs.write_rules(tmp_path)
    result = promtool("check", "rules", *map(str, rules))
    assert result.returncode == 0, result.stdout + result.stderr
    result = promtool("test", "rules", *map(str, sorted((tmp_path / "tests").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_threshold_and_selector_of_config_yml_is_used():
    templates = "".join(path.read_text() for path in (TOP / "files/alerts").glob("*.rules.yml.j2"))
    config = monitoring_refs.alert_config()
    for job in config["selectors"]:
        assert f"selectors.{job} ]]" in templates, job
    for alert, values in config["thresholds"].items():
        assert {a["alert"] for a in ALERTS} >= {alert}
        for key in values:
            assert f"thresholds.{alert}.{key} " in templates, (alert, key)
    assert {a["alert"] for a in ALERTS if "for" in a} == set(config["thresholds"])


def test_every_alert_is_tested_before_and_after_its_for():
    cases: dict[str, list[bool]] = {}
    for path in (TOP / "files/alerts/tests").glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(bool(case["exp_alerts"]))
    for alert in ALERTS:
        sides = [True] if "for" not in alert else [False, True]  # Watchdog fires at once
        assert sorted(set(cases.get(alert["alert"], []))) == sides, alert["alert"]


def test_the_runbook_alerts_keep_their_names_and_for():
    by_name = {alert["alert"]: alert for alert in ALERTS}
    for name, duration in RUNBOOK_ALERTS.items():
        assert by_name[name]["for"] == duration


def test_alerts_carry_severity_summary_description_and_a_runbook_section():
    operations = (TOP / "docs/operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9-]", "", line.lstrip("#").strip().lower().replace(" ", "-"))
        for line in operations.splitlines()
        if line.startswith("#")
    }
    for alert in ALERTS:
        heartbeat = alert["alert"] == "Watchdog"  # not a problem: the dead-man switch's pulse
        severities = ("none",) if heartbeat else ("critical", "warning")
        assert set(alert["labels"]) == {"severity"} and alert["labels"]["severity"] in severities, (
            alert["alert"]
        )
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, alert["alert"]
        assert "{{" not in annotations["summary"], "summaries are static"
        assert heartbeat or "$labels.instance" in annotations["description"], alert["alert"]
        anchor = annotations["runbook_url"].split("#")[1]
        assert anchor == alert["alert"].lower() and anchor in anchors, alert["alert"]


def test_dashboards_are_generated_and_current():
    result = subprocess.run(
        [sys.executable, str(TOP / "scripts/dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("uid", sorted(monitoring_refs.dashboards()))
def test_dashboard_structure_variables_and_units(uid):
    dashboard = monitoring_refs.dashboards()[uid]
    assert dashboard["uid"] == uid and dashboard["title"].startswith("CodeGraph / ")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    jobs = {"lb_job"} if uid == "codegraph-edge" else {"job", "node_job"}
    assert set(variables) == {"datasource", "instance"} | jobs
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    used = set()
    for panel in dashboard["panels"]:
        if panel["type"] == "row":  # a heading: a title, nothing to query
            assert panel["title"] and not panel["panels"], panel
            continue
        assert panel["description"] and panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert '"$instance"' in expr or '=~"$instance"' in expr, (panel["title"], expr)
            assert any(f"${job}" in expr for job in jobs), (panel["title"], expr)
            for window in re.findall(r"\b(?:rate|irate|increase)\([^\[]*\[([^\]]+)\]", expr):
                assert window == "$__rate_interval", (panel["title"], expr)
            used.update(re.findall(r"\$(\w+)", expr))
    assert "instance" in used and used & jobs


def test_the_four_runbook_dashboards_have_its_panels():
    titles = {
        uid: {p["title"] for p in d["panels"]} for uid, d in monitoring_refs.dashboards().items()
    }
    assert {"Service status", "Request rate", "Error rate", "Response time percentiles"} <= titles[
        "codegraph-overview"
    ]
    assert {"CPU usage", "Memory usage", "Disk I/O", "Network I/O"} <= titles[
        "codegraph-performance"
    ]
    assert {
        "Nodes created, updated, deleted",
        "Search queries",
        "Parse operations",
        "Vector searches",
    } <= titles["codegraph-business"]
    assert {
        "Compaction backlog",
        "Block cache hit rate",
        "Write amplification",
        "Read amplification",
    } <= titles["codegraph-database"]


def test_the_overview_marks_when_each_host_started_serving_a_release():
    """Every rollout shows on the overview's graphs: the service's build-info metric
    carries its version, and an annotation marks a host's first minutes on a version."""
    overview = monitoring_refs.dashboards()["codegraph-overview"]
    [release] = [a for a in overview["annotations"]["list"] if a["name"] == "Releases"]
    assert release["enable"] and "codegraph_build_info" in release["expr"]
    assert "by (instance, version)" in release["expr"] and " unless " in release["expr"]
    assert "{{version}}" in release["titleFormat"] and "{{instance}}" in release["titleFormat"]
    assert (
        "codegraph-overview: annotation Releases",
        monitoring_refs.substitute(release["expr"]),
    ) in (monitoring_refs.expressions())


def test_every_expression_parses(tmp_path):
    """promtool parses each expression (as a recording rule), variables substituted."""
    rules = [
        {"record": f"check:expr_{number}", "expr": expr}
        for number, (_, expr) in enumerate(monitoring_refs.expressions())
    ]
    check = tmp_path / "expressions.rules.yml"
    check.write_text(yaml.safe_dump({"groups": [{"name": "parse", "rules": rules}]}))
    result = promtool("check", "rules", str(check))
    assert result.returncode == 0, result.stdout + result.stderr


def test_metric_name_extraction_is_not_fooled_by_labels_or_functions():
    expr = 'sum by (instance, le) (rate(x_bucket{job="a", code=~"5.."}[5m]))'
    names = monitoring_refs.metric_names(expr + " / on(instance) y > 2 * 3600")
    assert names == {"x_bucket", "y"}
    shifted = 'group by (instance) (b{job="a"}) unless group by (instance) (b{job="a"} offset 2m)'
    assert monitoring_refs.metric_names(shifted) == {"b"}


def test_grafana_provisioning_files():
    provider = yaml.safe_load((TOP / "files/dashboards/provisioning/dashboards.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/codegraph"
    source = yaml.safe_load((TOP / "files/dashboards/provisioning/datasources.yml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"
