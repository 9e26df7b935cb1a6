# Copyright: CodeGraph Ops
# Apache License 2.0 (see LICENSE)
"""The canary analysis' PromQL: what is asked of Prometheus for one side (the batch or
the baseline) over one window, how its answers become the numbers canary.analyse()
judges, links to each query, and the Markdown table an operator reads."""

from __future__ import annotations

import json
import math
import re
import time
from urllib.parse import quote, urlencode

# name -> (query template, the labels its answer is keyed by). {service}, {lb} and {w}
# are filled per side: the service's and HAProxy's selectors, and the window.
QUERIES = {
    "requests": (
        "sum by (instance, handler, code) (increase(http_requests_total{{{service}}}[{w}]))",
        ("instance", "handler", "code"),
    ),
    "buckets": (
        "sum by (handler, le) (increase(http_request_duration_seconds_bucket{{{service}}}[{w}]))",
        ("handler", "le"),
    ),
    "lb_responses": (
        "sum by (server, code) (increase(haproxy_server_http_responses_total{{{lb}}}[{w}]))",
        ("server", "code"),
    ),
    "refused_entries": (
        "sum by (instance)"
        " (increase(codegraph_replication_refused_entries_total{{{service}}}[{w}]))",
        ("instance",),
    ),
    "lag_entries": (
        "max by (instance) (max_over_time(codegraph_replication_lag_entries{{{service}}}[{w}]))",
        ("instance",),
    ),
    "restarts": (
        "sum by (instance) (changes(process_start_time_seconds{{{service}}}[{w}]))",
        ("instance",),
    ),
    "memory_growth": (
        "max by (instance) (delta(process_resident_memory_bytes{{{service}}}[{w}]))",
        ("instance",),
    ),
    "scrape_up": ("avg by (instance) (avg_over_time(up{{{service}}}[{w}]))", ("instance",)),
    "lb_retries": (
        "sum by (instance) (label_replace("
        "increase(haproxy_server_retry_warnings_total{{{lb}}}[{w}]),"
        ' "instance", "$1", "server", "(.*)"))',
        ("instance",),
    ),
    "lb_check_failures": (
        "sum by (instance) (label_replace("
        "increase(haproxy_server_check_failures_total{{{lb}}}[{w}]),"
        ' "instance", "$1", "server", "(.*)"))',
        ("instance",),
    ),
}
# where each row's numbers come from (the link shown beside it)
SOURCE = {
    "traffic_share": "requests",
    "error_ratio": "requests",
    "client_error_ratio": "requests",
    "user_requests": "requests",
    "latency_p95": "buckets",
    "latency_p99": "buckets",
    "lb_error_ratio": "lb_responses",
}


def alternation(names):
    """a|b, each name matched literally (escaped for RE2, then for the PromQL string)."""
    return "|".join(re.escape(name).replace("\\", "\\\\") for name in sorted(names))


def side_queries(instances, window, jobs, checks=()):
    """Every query for one side: {name: (PromQL, key labels)}; the operator's checks
    under their names, keyed by instance when their answer keeps it."""
    hosts = alternation(instances)
    selectors = {
        "service": f'job="{jobs["service"]}", instance=~"{hosts}"',
        "lb": f'job="{jobs["lb"]}", proxy="{jobs["backend"]}", server=~"{hosts}"',
        "w": f"{window}s",
    }
    found = {
        name: (template.format(**selectors), keys) for name, (template, keys) in QUERIES.items()
    }
    for check in checks:
        query = check["query"].replace("$instances", hosts).replace("$window", f"{window}s")
        found["custom:" + check["name"]] = (query, None)
    return found


def parse(answer, keys):
    """A vector answer -> {tuple of key label values (one value when one key): value};
    keys None (an operator's check): by instance when the answer has it, else ''."""
    found = {}
    for sample in answer:
        value = float(sample["value"][1])
        if math.isnan(value):  # nothing to divide, so no value
            continue
        labels = sample["metric"]
        if keys is None:
            key = labels.get("instance", "")
        else:
            key = tuple(labels.get(name, "") for name in keys)
            key = key[0] if len(key) == 1 else key
        found[key] = found.get(key, 0.0) + value
    return found


def side_results(answers):
    """{name: parsed answer} -> the side's results as canary.analyse() takes them."""
    side = {"hosts": {}, "custom": {}}
    for name, values in answers.items():
        if name.startswith("custom:"):
            side["custom"][name[len("custom:") :]] = values
        elif name in ("requests", "buckets", "lb_responses"):
            side[name] = values
        else:
            side["hosts"][name] = values
    return side


def links(prometheus_url, query, start, end, grafana_url=None, datasource=None):
    """Links to a query over the window: Prometheus' graph, and Grafana's explore."""
    seconds = max(int(end - start), 1)
    found = {
        "prometheus": prometheus_url.rstrip("/")
        + "/graph?"
        + urlencode(
            {
                "g0.expr": query,
                "g0.tab": "0",
                "g0.range_input": f"{seconds}s",
                "g0.end_input": _iso(end),
            }
        )
    }
    if grafana_url:
        pane = {
            "datasource": datasource or "prometheus",
            "queries": [{"refId": "A", "expr": query}],
            "range": {"from": str(int(start * 1000)), "to": str(int(end * 1000))},
        }
        found["grafana"] = grafana_url.rstrip("/") + "/explore?left=" + quote(json.dumps(pane))
    return found


def _iso(at):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def markdown(rows, batch_name):
    """The table an operator reads: one line per row, the failures first."""
    lines = [
        f"| Check | Scope | Batch ({batch_name}) | Baseline | Limit | Test | Verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {"fail": 0, "warn": 1, "inconclusive": 2, "no data": 3, "pass": 4}
    for row in sorted(rows, key=lambda row: order.get(row["verdict"], 5)):
        unit = 1048576.0 if row["check"] == "memory_growth" else None  # shown in MiB
        shown = [_number(row.get(name), unit) for name in ("batch", "baseline", "limit")]
        check = row["check"]
        if row.get("links"):
            check = f"[{check}]({row['links']['prometheus']})"
        scope = row["scope"] + (f" {row['status']}" if row.get("status") else "")
        verdict = row["verdict"] + (f" ({row['why']})" if row.get("why") else "")
        lines.append(
            "| {} | {} | {} | {} | {} | {} | {} |".format(
                check, scope, shown[0], shown[1], shown[2], _test(row), verdict.replace("|", "/")
            )
        )
    return "\n".join(lines)


def _test(row):
    if "counts" in row:
        (a, n), (c, m) = row["counts"]["batch"], row["counts"]["baseline"]
        shown = f"{a}/{n} vs {c}/{m}"
        if row.get("slow_over") is not None:
            shown += f" over {row['slow_over']:g} s"
        if row.get("p_value") is not None:
            shown += f", p={row['p_value']:.2g}"
        return shown
    hosts = row.get("hosts") or {}
    if hosts:
        return ", ".join(
            f"{host} {_number(value)}" for host, value in sorted(hosts.get("batch", {}).items())
        )
    return "-"


def _number(value, unit=None):
    if value is None:
        return "-"
    if unit:
        return f"{value / unit:.1f} MiB"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
