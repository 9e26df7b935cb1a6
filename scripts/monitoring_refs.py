"""The PromQL of the alert rules and dashboards, and the metric names it uses.

Shared by the offline checks (tests/test_monitoring.py) and the live-scrape check
of the monitoring scenario, so both read the same list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2
import yaml

TOP = Path(__file__).resolve().parent.parent
ALERTS = TOP / "files" / "alerts"
DASHBOARDS = TOP / "files" / "dashboards"
# What the dashboards' variables stand for when an expression is checked offline.
VARIABLES = {
    "$__rate_interval": "5m",
    "$node_job": "node",
    "$lb_job": "haproxy",
    "$job": "codegraph",
    "$instance": ".*",
}
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "le",
}


def alert_config(selectors: dict | None = None, thresholds: dict | None = None) -> dict:
    """files/alerts/config.yml with overrides merged over it, as the prometheus role does
    (selectors replaced by key, thresholds by alert and key)."""
    config = yaml.safe_load((ALERTS / "config.yml").read_text())
    config["selectors"].update(selectors or {})
    for alert, values in (thresholds or {}).items():
        config["thresholds"][alert] = {**config["thresholds"][alert], **values}
    return config


def render_rules(
    selectors: dict | None = None,
    thresholds: dict | None = None,
    runbook_base_url: str = "https://codegraph-ops.invalid/docs/operations.md",
) -> dict[str, str]:
    """Each rule template of files/alerts rendered: {"codegraph.rules.yml": text, ...}.
    The delimiters are the prometheus role's ([[ ]]), so Prometheus' {{ }} stay."""
    config = alert_config(selectors, thresholds)
    env = jinja2.Environment(  # noqa: S701 (YAML for Prometheus, not HTML)
        variable_start_string="[[",
        variable_end_string="]]",
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return {
        path.name.removesuffix(".j2"): env.from_string(path.read_text()).render(
            **config, runbook_base_url=runbook_base_url
        )
        for path in sorted(ALERTS.glob("*.rules.yml.j2"))
    }


def write_rules(folder: Path, **overrides) -> list[Path]:
    """The rendered rules written into folder, with the promtool tests beside them in
    folder/tests (they name their rule files as ../x.rules.yml)."""
    (folder / "tests").mkdir(parents=True, exist_ok=True)
    for test in (ALERTS / "tests").glob("*.yml"):
        (folder / "tests" / test.name).write_text(test.read_text())
    written = []
    for name, text in render_rules(**overrides).items():
        (folder / name).write_text(text)
        written.append(folder / name)
    return written


def rule_groups() -> list[dict]:
    """The rules' groups, rendered with config.yml."""
    groups = []
    for text in render_rules().values():
        groups.extend(yaml.safe_load(text)["groups"])
    return groups


def recorded_names() -> set[str]:
    return {
        rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule
    }


def dashboards() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def expressions() -> list[tuple[str, str]]:
    """(where, expression) for every rule, dashboard query and annotation query, variables
    substituted."""
    found = [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in rule_groups()
        for rule in group["rules"]
    ]
    for uid, dashboard in dashboards().items():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):  # (a row has none)
                found.append((f"{uid}: {panel['title']}", substitute(target["expr"])))
        for annotation in dashboard.get("annotations", {}).get("list", []):
            found.append(
                (f"{uid}: annotation {annotation['name']}", substitute(annotation["expr"]))
            )
    return found


def substitute(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names in an expression: what is left once strings, label matchers,
    grouping clauses, functions and keywords are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\boffset\s+-?[0-9][0-9smhdwy]*", " ", text)  # offset 2m: no metric "m"
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        following = text[match.end() :].lstrip()[:1]
        if following != "(" and match.group(0) not in _KEYWORDS:
            names.add(match.group(0))
    return names


def used_metrics() -> set[str]:
    """Every metric a rule or panel reads, recording rules' own outputs excluded."""
    used = set().union(*(metric_names(expr) for _, expr in expressions()))
    return used - recorded_names()
