"""The PromQL of the alert rules and dashboards, and the metric names it uses.

Shared by the offline checks (tests/test_monitoring.py) and the live-scrape check
of the monitoring scenario, so both read the same list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

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


def rule_groups() -> list[dict]:
    groups = []
    for path in sorted(ALERTS.glob("*.rules.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def recorded_names() -> set[str]:
    return {
        rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule
    }


def dashboards() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def expressions() -> list[tuple[str, str]]:
    """(where, expression) for every rule and every dashboard query, variables substituted."""
    found = [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in rule_groups()
        for rule in group["rules"]
    ]
    for uid, dashboard in dashboards().items():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):  # (a row has none)
                found.append((f"{uid}: {panel['title']}", substitute(target["expr"])))
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
