# Copyright: CodeGraph Ops
# Apache License 2.0 (see LICENSE)
"""Canary analysis: the queries that compare a batch of hosts on the new release with
the hosts still on the old one over one window, and the verdicts on their answers.

Pure functions over numbers (the canary_analysis module asks Prometheus), so each
verdict can be tested from recorded query results.

A check fails when the batch's value exceeds the baseline's by more than its relative
factor and by more than its absolute margin (both: a tiny baseline does not make noise
a failure, nor a large one hide a jump). A route's checks are inconclusive below the
minimum number of requests; the verdict is inconclusive while a route that is busy on
the baseline (as many requests per host as the minimum) is still below it on the batch,
or when no route could be judged at all.
"""

from __future__ import annotations

import re

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"

# check -> relative factor and absolute margin: the defaults (docs/operations.md says why)
DEFAULT_THRESHOLDS = {
    "error_ratio": {"relative": 2.0, "absolute": 0.01},  # share of 5xx answers, per route
    "latency_p95": {"relative": 1.5, "absolute": 0.05},  # 95th percentile (s), per route
    "latency_p99": {"relative": 1.5, "absolute": 0.1},  # 99th percentile (s), per route
    "refused_entries": {"relative": 1.0, "absolute": 0.0},  # entries the applier refused
    "lag_entries": {"relative": 2.0, "absolute": 50.0},  # entries behind the log, worst host
    "restarts": {"relative": 1.0, "absolute": 0.0},  # service restarts in the window
    "memory_growth": {"relative": 2.0, "absolute": 268435456.0},  # RSS growth, worst host
}
PER_ROUTE = ("error_ratio", "latency_p95", "latency_p99")


def thresholds_with(overrides):
    """The defaults with overrides ({check: {relative, absolute}}, either or both) merged
    in; an unknown check or a value that is not a number >= 0 raises ValueError."""
    merged = {check: dict(limits) for check, limits in DEFAULT_THRESHOLDS.items()}
    for check, limits in (overrides or {}).items():
        if check not in merged:
            raise ValueError(f"unknown check {check!r} (known: {', '.join(merged)})")
        if not isinstance(limits, dict) or set(limits) - {"relative", "absolute"}:
            raise ValueError(f"{check}: give a dict of relative and/or absolute, not {limits!r}")
        for name, value in limits.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{check}.{name} must be a number >= 0, not {value!r}")
            merged[check][name] = float(value)
    return merged


def _selector(instances):
    """instance=~"a|b", each name matched literally (escaped for RE2, then for the
    PromQL string)."""
    names = "|".join(re.escape(name).replace("\\", "\\\\") for name in sorted(instances))
    return f'instance=~"{names}"'


def queries(window, instances):
    """PromQL for every check over window (e.g. '60s') for a set of instances: per
    route ({handler: value}) for the per-route checks, one number for the others;
    'requests' gives each route's request count (the verdict's minimum)."""
    service = f'job="codegraph", {_selector(instances)}'

    def over(metric, labels=service):
        return f"{metric}{{{labels}}}[{window}]"

    requests = f"sum by (handler) (increase({over('http_requests_total')}))"
    failed = service + ', code=~"5.."'
    errors = f"sum by (handler) (increase({over('http_requests_total', failed)}))"
    buckets = f"sum by (handler, le) (rate({over('http_request_duration_seconds_bucket')}))"
    return {
        "requests": requests,
        # a route without a single 5xx has no such series: 0 errors, not no ratio
        "error_ratio": f"({errors} or 0 * {requests}) / {requests}",
        "latency_p95": f"histogram_quantile(0.95, {buckets})",
        "latency_p99": f"histogram_quantile(0.99, {buckets})",
        "refused_entries": f"sum(increase({over('codegraph_replication_refused_entries_total')}))",
        "lag_entries": f"max(max_over_time({over('codegraph_replication_lag_entries')}))",
        "restarts": f"sum(changes({over('process_start_time_seconds')}))",
        "memory_growth": f"max(delta({over('process_resident_memory_bytes')}))",
    }


def judge(check, scope, batch, baseline, threshold, requests=None, min_requests=0):
    """One row of the table: check, scope (a route, or 'hosts'), the batch's value, the
    baseline's, the limit the batch had to stay under, and the verdict."""
    row = {"check": check, "scope": scope, "batch": batch, "baseline": baseline}
    if batch is None or (requests is not None and requests < min_requests):
        row.update(limit=None, verdict=INCONCLUSIVE)
        row["why"] = "no data" if batch is None else f"{requests:.0f} requests < {min_requests}"
        return row
    base = baseline or 0.0
    limit = max(base * threshold["relative"], base + threshold["absolute"])
    row.update(limit=limit, verdict=FAIL if batch > limit else PASS)
    return row


def analyse(batch, baseline, thresholds=None, min_requests=50, hosts=(1, 1)):
    """Rows for every check from two sets of query results (as queries() names them;
    per-route checks as {handler: value}), the batch's first. hosts: how many hosts
    each side has (a route is busy when the baseline has min_requests per host)."""
    thresholds = thresholds_with(thresholds)
    rows = []
    requests = batch.get("requests") or {}
    per_host = {
        route: count / max(hosts[1], 1) for route, count in (baseline.get("requests") or {}).items()
    }
    for check, threshold in thresholds.items():
        if check not in batch:
            continue
        if check in PER_ROUTE:
            for route in sorted(batch[check] or {}):
                row = judge(
                    check,
                    route,
                    batch[check][route],
                    (baseline.get(check) or {}).get(route),
                    threshold,
                    requests=requests.get(route, 0),
                    min_requests=min_requests,
                )
                row["busy"] = per_host.get(route, 0) >= min_requests
                rows.append(row)
        else:
            rows.append(judge(check, "hosts", batch[check], baseline.get(check), threshold))
    return rows


def verdict(rows):
    """fail if any row fails; inconclusive while a route busy on the baseline is not yet
    judged on the batch, or no route is; pass otherwise."""
    if any(row["verdict"] == FAIL for row in rows):
        return FAIL
    routes = [row for row in rows if row["check"] in PER_ROUTE]
    waiting = [row for row in routes if row["verdict"] == INCONCLUSIVE and row.get("busy")]
    judged = [row for row in routes if row["verdict"] == PASS]
    return PASS if judged and not waiting else INCONCLUSIVE


def markdown(rows, batch_name):
    """The table an operator reads."""
    lines = [
        f"| Check | Scope | Batch ({batch_name}) | Baseline | Limit | Verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        unit = 1048576.0 if row["check"] == "memory_growth" else None  # shown in MiB
        shown = [_number(row[name], unit) for name in ("batch", "baseline", "limit")]
        verdict_shown = row["verdict"] + (" ({})".format(row["why"]) if row.get("why") else "")
        lines.append(
            "| {} | {} | {} | {} | {} | {} |".format(
                row["check"], row["scope"], shown[0], shown[1], shown[2], verdict_shown
            )
        )
    return "\n".join(lines)


def _number(value, unit=None):
    if value is None:
        return "-"
    if unit:
        return f"{value / unit:.1f} MiB"
    return (f"{value:.4g}") if isinstance(value, float) else str(value)
