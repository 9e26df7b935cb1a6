# Copyright: CodeGraph Ops
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Canary analysis: the queries that compare a batch of hosts on the new release with
the hosts still on the old one over one window, and the verdicts on their answers.

Pure functions over numbers (the canary_analysis module asks Prometheus), so each
verdict can be tested from recorded query results.

A check fails when the batch's value exceeds the baseline's by more than its relative
factor and by more than its absolute margin (both: a tiny baseline does not make noise
a failure, nor a large one hide a jump). A check over requests is inconclusive below
the minimum number of requests.
"""

from __future__ import annotations

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"

# check -> (relative factor, absolute margin): the module's defaults
DEFAULT_THRESHOLDS = {
    "error_ratio": (2.0, 0.01),  # share of 5xx answers, per route
    "latency_p95": (1.5, 0.05),  # 95th percentile of answer time (s), per route
    "latency_p99": (1.5, 0.1),  # 99th percentile of answer time (s), per route
    "refused_entries": (1.0, 0.0),  # log entries the applier refused, all hosts
    "lag_entries": (2.0, 50.0),  # entries behind the log, worst host
    "restarts": (1.0, 0.0),  # service restarts in the window
    "memory_growth": (1.5, 67108864.0),  # growth of resident memory (bytes), worst host
}
PER_ROUTE = ("error_ratio", "latency_p95", "latency_p99")


def _selector(instances):
    return 'instance=~"{}"'.format("|".join(sorted(instances)))


def queries(window, instances):
    """PromQL for every check over window (e.g. '60s') for a set of instances: per
    route ({handler: value}) for the per-route checks, one number for the others;
    'requests' gives each route's request count (the verdict's minimum)."""
    hosts = _selector(instances)
    service = f'job="codegraph", {hosts}'

    def over(metric, labels=hosts):
        return f"{metric}{{{labels}}}[{window}]"

    requests = f"sum by (handler) (increase({over('http_requests_total')}))"
    failed = hosts + ', code=~"5.."'
    errors = f"sum by (handler) (increase({over('http_requests_total', failed)}))"
    buckets = f"sum by (handler, le) (rate({over('http_request_duration_seconds_bucket')}))"
    return {
        "requests": requests,
        "error_ratio": f"({errors}) / ({requests})",
        "latency_p95": f"histogram_quantile(0.95, {buckets})",
        "latency_p99": f"histogram_quantile(0.99, {buckets})",
        "refused_entries": f"sum(increase({over('codegraph_replication_refused_entries_total')}))",
        "lag_entries": f"max(max_over_time({over('codegraph_replication_lag_entries')}))",
        "restarts": f"sum(changes({over('process_start_time_seconds', service)}))",
        "memory_growth": f"max(delta({over('process_resident_memory_bytes', service)}))",
    }


def judge(check, scope, batch, baseline, threshold, requests=None, min_requests=0):
    """One row of the table: check, scope (a route, or 'hosts'), the batch's value, the
    baseline's, the limit the batch had to stay under, and the verdict."""
    relative, absolute = threshold
    row = {"check": check, "scope": scope, "batch": batch, "baseline": baseline}
    if batch is None or (requests is not None and requests < min_requests):
        row.update(limit=None, verdict=INCONCLUSIVE)
        row["why"] = "no data" if batch is None else f"{requests:.0f} requests < {min_requests}"
        return row
    base = baseline or 0.0
    limit = max(base * relative, base + absolute)
    row.update(limit=limit, verdict=FAIL if batch > limit else PASS)
    return row


def analyse(batch, baseline, thresholds=None, min_requests=50):
    """Rows for every check from two sets of query results (as queries() names them;
    per-route checks as {handler: value}), the batch's first."""
    thresholds = dict(DEFAULT_THRESHOLDS, **(thresholds or {}))
    rows = []
    requests = batch.get("requests") or {}
    for check, (relative, absolute) in thresholds.items():
        if check not in batch:
            continue
        if check in PER_ROUTE:
            for route in sorted(batch[check] or {}):
                rows.append(
                    judge(
                        check,
                        route,
                        batch[check][route],
                        (baseline.get(check) or {}).get(route),
                        (relative, absolute),
                        requests=requests.get(route, 0),
                        min_requests=min_requests,
                    )
                )
        else:
            rows.append(
                judge(check, "hosts", batch[check], baseline.get(check), (relative, absolute))
            )
    return rows


def verdict(rows):
    """fail if any row fails; inconclusive if none fails but no request check could
    be judged; pass otherwise."""
    if any(row["verdict"] == FAIL for row in rows):
        return FAIL
    judged = [row for row in rows if row["check"] in PER_ROUTE and row["verdict"] == PASS]
    return PASS if judged else INCONCLUSIVE


def markdown(rows, batch_name):
    """The table an operator reads."""
    lines = [
        f"| Check | Scope | Batch ({batch_name}) | Baseline | Limit | Verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        shown = [_number(row[name]) for name in ("batch", "baseline", "limit")]
        verdict_shown = row["verdict"] + (" ({})".format(row["why"]) if row.get("why") else "")
        lines.append(
            "| {} | {} | {} | {} | {} | {} |".format(
                row["check"], row["scope"], shown[0], shown[1], shown[2], verdict_shown
            )
        )
    return "\n".join(lines)


def _number(value):
    if value is None:
        return "-"
    return (f"{value:.4g}") if isinstance(value, float) else str(value)
