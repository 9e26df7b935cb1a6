# Copyright: CodeGraph Ops
# Apache License 2.0 (see LICENSE)
"""Canary analysis: the verdicts on a batch of hosts on a new release against the hosts
still on the old one, over one window, from what Prometheus answered (each side as
canary_promql.side_results() gathers it). Pure functions over numbers, so every verdict
is tested from recorded results.

What is judged (docs/operations.md, "Canary analysis"):
- User traffic only: the routes of HAProxy's health checks and of monitoring
  (`probe_routes`) never make a batch judged.
- Per route the baseline serves (and over all routes): the route's share of the
  traffic (a route that disappears, or whose traffic moves to another label, fails),
  its 5xx share, the share of each 4xx code, and its latency, compared as counts of
  requests over a histogram bucket boundary. Each is an exact test on counts that knows
  both sample sizes (canary_stats): a row fails when the batch is past its limit AND
  the test says so at the configured confidence; it is inconclusive only when the test
  cannot decide (even the worst possible batch would not be significant).
- A route only the batch serves is reported and judged on its errors against the
  absolute margins (a binomial test), never on latency alone.
- Per host: each batch host against the median of the baseline hosts (refused log
  entries, lag, restarts, memory growth, scrape completeness, HAProxy's retries and
  failed health checks), never sums over groups of unequal size. A series the baseline
  has and a batch host lacks fails; a check with no data anywhere says so and never
  counts as a pass.
- The operator's own checks (PromQL templates), critical or not, or in dry run.
"""

from __future__ import annotations

import math
import re

from ansible_collections.codegraph.ops.plugins.module_utils.canary_stats import (
    binomial_at_least,
    fisher_greater,
    fisher_less,
    median,
)

PASS, FAIL, INCONCLUSIVE, NO_DATA = "pass", "fail", "inconclusive", "no data"
WARN = "warn"  # a failed check the operator marked not critical
HIGHER, LOWER = "higher_is_worse", "lower_is_worse"
ALL_ROUTES = "(all routes)"

# check -> relative factor and absolute margin: the defaults (docs/operations.md says why).
# A higher-is-worse check's limit is max(baseline * relative, baseline + absolute); a
# lower-is-worse one's min(baseline / relative, baseline - absolute).
DEFAULT_THRESHOLDS = {
    "traffic_share": {"relative": 2.0, "absolute": 0.0},  # a route's share of user traffic
    "error_ratio": {"relative": 2.0, "absolute": 0.01},  # share of 5xx answers
    "client_error_ratio": {"relative": 2.0, "absolute": 0.02},  # share of one 4xx code
    "latency_p95": {"relative": 1.5, "absolute": 0.05},  # s: the baseline's p95 -> limit
    "latency_p99": {"relative": 1.5, "absolute": 0.1},  # s: the baseline's p99 -> limit
    "lb_error_ratio": {"relative": 2.0, "absolute": 0.01},  # 5xx share as HAProxy saw it
    "refused_entries": {"relative": 1.0, "absolute": 0.0},  # log entries the applier refused
    "lag_entries": {"relative": 2.0, "absolute": 50.0},  # worst lag behind the log
    "restarts": {"relative": 1.0, "absolute": 0.0},  # service restarts in the window
    "memory_growth": {"relative": 2.0, "absolute": 268435456.0},  # RSS growth (bytes)
    "user_requests": {"relative": 4.0, "absolute": 10.0},  # requests a host was given
    "scrape_up": {"relative": 1.0, "absolute": 0.1},  # share of scrapes that answered
    "lb_retries": {"relative": 2.0, "absolute": 5.0},  # HAProxy's retries to the server
    "lb_check_failures": {"relative": 1.0, "absolute": 0.0},  # its failed health checks
}
QUANTILES = {"latency_p95": 0.95, "latency_p99": 0.99}
HOST_CHECKS = {
    "user_requests": LOWER,
    "refused_entries": HIGHER,
    "lag_entries": HIGHER,
    "restarts": HIGHER,
    "memory_growth": HIGHER,
    "scrape_up": LOWER,
    "lb_retries": HIGHER,
    "lb_check_failures": HIGHER,
}
DEFAULT_PROBE_ROUTES = ("/ready", "/health", "/metrics")
_CHECK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _limits(value, where):
    if not isinstance(value, dict) or not value or set(value) - {"relative", "absolute"}:
        raise ValueError(f"{where}: give a dict of relative and/or absolute, not {value!r}")
    for name, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
            raise ValueError(f"{where}.{name} must be a number >= 0, not {number!r}")
        if name == "relative" and number < 1:
            raise ValueError(f"{where}.relative must be >= 1 (a factor), not {number!r}")
    return {name: float(number) for name, number in value.items()}


def thresholds_with(overrides, routes=None):
    """(per check, per route) thresholds: the defaults with `overrides` ({check:
    {relative, absolute}}, either or both) merged in, and `routes` ({route: {check:
    {...}}}) over those for one route. Anything else raises ValueError naming it."""
    merged = {check: dict(limits) for check, limits in DEFAULT_THRESHOLDS.items()}
    for check, limits in (overrides or {}).items():
        if check not in merged:
            raise ValueError(f"unknown check {check!r} (known: {', '.join(merged)})")
        merged[check].update(_limits(limits, check))
    per_route = {}
    for route, checks in (routes or {}).items():
        if not isinstance(checks, dict):
            raise ValueError(f"route {route!r}: give a dict of checks, not {checks!r}")
        per_route[route] = {}
        for check, limits in checks.items():
            if check not in merged or check in HOST_CHECKS:
                raise ValueError(f"route {route!r}: {check!r} is not a per-route check")
            per_route[route][check] = {**merged[check], **_limits(limits, f"{route}.{check}")}
    return merged, per_route


def checks_with(checks):
    """The operator's checks, each {name, query, direction, relative, absolute, critical,
    dry_run} with defaults filled in; ValueError naming what is wrong."""
    known, seen = [], set()
    for check in checks or []:
        if not isinstance(check, dict):
            raise ValueError(f"a check is a dict, not {check!r}")
        name = check.get("name")
        if not isinstance(name, str) or not _CHECK_NAME.match(name):
            raise ValueError(f"check name {name!r}: lowercase letters, digits and _")
        if name in seen or name in DEFAULT_THRESHOLDS:
            raise ValueError(f"check {name!r} is named twice (or like a built-in check)")
        seen.add(name)
        unknown = set(check) - {"name", "query", "direction", "relative", "absolute"}
        unknown -= {"critical", "dry_run"}
        if unknown:
            raise ValueError(f"check {name!r}: unknown keys {', '.join(sorted(unknown))}")
        query = check.get("query")
        if not isinstance(query, str) or "$instances" not in query or "$window" not in query:
            raise ValueError(f"check {name!r}: query must use $instances and $window")
        direction = check.get("direction", HIGHER)
        if direction not in (HIGHER, LOWER):
            raise ValueError(f"check {name!r}: direction is {HIGHER} or {LOWER}")
        limits = {"relative": 1.0, "absolute": 0.0}
        limits.update(_limits({k: check[k] for k in limits if k in check} or limits, name))
        flags = {
            flag: check.get(flag, default)
            for flag, default in (("critical", True), ("dry_run", False))
        }
        for flag, value in flags.items():
            if not isinstance(value, bool):
                raise ValueError(f"check {name!r}: {flag} is true or false, not {value!r}")
        known.append({"name": name, "query": query, "direction": direction, **limits, **flags})
    return known


def _limit(base, threshold, direction):
    if direction == LOWER:
        return min(base / threshold["relative"], base - threshold["absolute"])
    return max(base * threshold["relative"], base + threshold["absolute"])


def _past(value, limit, direction):
    return value < limit if direction == LOWER else value > limit


def judge_counts(batch, baseline, limit, direction, confidence, new_limit=None):
    """Verdict and test numbers for `events of size` on the batch against the baseline.
    limit: the share the batch must stay within (past it and significant: fail). With no
    baseline (size 0), a route only the batch serves: held to new_limit by a binomial
    test (not judged when new_limit is None)."""
    (events, size), (base_events, base_size) = batch, baseline
    alpha = 1.0 - confidence
    if size == 0:
        return {"verdict": NO_DATA, "why": "no requests on the batch"}
    share = events / size
    if base_size == 0:
        if new_limit is None:
            return {"verdict": NO_DATA, "why": "new route: no baseline to compare with"}
        limit = new_limit
        p_value = binomial_at_least(events, size, limit)
        worst = binomial_at_least(size, size, limit)
    elif direction == LOWER:
        p_value = fisher_less(events, size, base_events, base_size)
        worst = fisher_less(0, size, base_events, base_size)
    else:
        p_value = fisher_greater(events, size, base_events, base_size)
        worst = fisher_greater(size, size, base_events, base_size)
    found = {"limit": limit, "p_value": p_value}
    if _past(share, limit, direction) and p_value < alpha:
        return {**found, "verdict": FAIL, "why": f"p={p_value:.2g} < {alpha:.2g}"}
    if worst >= alpha:
        why = f"too few requests to decide ({size}: even the worst split has p={worst:.2g})"
        return {**found, "verdict": INCONCLUSIVE, "why": why}
    return {
        **found,
        "verdict": PASS,
        "why": "" if not _past(share, limit, direction) else f"p={p_value:.2g}",
    }


def _share(events, size):
    return events / size if size else None


class Traffic:
    """One side's user requests: per host, per route, per status code (counts)."""

    def __init__(self, requests, probe_routes):
        self.by_host = {}  # instance -> route -> code -> count
        for (instance, route, code), count in requests.items():
            if route in probe_routes:
                continue
            codes = self.by_host.setdefault(instance, {}).setdefault(route, {})
            codes[code] = codes.get(code, 0) + round(count)

    def routes(self):
        return sorted({route for routes in self.by_host.values() for route in routes})

    def per_host(self, route, matches):
        """{instance: [events, size]}: requests of the route whose code `matches`, of
        all its requests, per host of the side. route: a route, or a set of routes to
        leave out (all the others counted)."""
        found = {}
        for instance, routes in sorted(self.by_host.items()):
            events = size = 0
            for name, codes in routes.items():
                if name == route if isinstance(route, str) else name not in route:
                    size += sum(codes.values())
                    events += sum(count for code, count in codes.items() if matches(code))
            found[instance] = [events, size]
        return found

    def shares(self, route):
        """{instance: [requests of the route, all its user requests]} per host."""
        everything = self.per_host(frozenset(), _any)
        return {
            instance: [counts[1], everything[instance][1]]
            for instance, counts in self.per_host(route, _any).items()
        }

    def counts(self, route, matches):
        """(events, size) summed over the side's hosts."""
        return _summed(self.per_host(route, matches))

    def total(self):
        return self.counts(frozenset(), _any)[1]


def _summed(per_host):
    """(events, size) of {instance: [events, size]}."""
    return sum(pair[0] for pair in per_host.values()), sum(pair[1] for pair in per_host.values())


def _any(code):
    return True


def _is_5xx(code):
    return str(code).startswith("5")


def _code_is(wanted):
    return lambda code: str(code) == wanted


def _route_rows(route, batch, baseline, limits, confidence, own=None):
    """traffic_share, error_ratio and client_error_ratio (one per 4xx code) of one route,
    or of all routes (route None) but those with a threshold of their own for the check
    (own: {check: routes}): a route given its own threshold is judged by it alone."""
    rows = []
    new = route is not None and baseline.counts(route, _any)[1] == 0
    if route is not None and not new:
        share = ((side.counts(route, _any)[1], side.total()) for side in (batch, baseline))
        row = _count_row("traffic_share", route, *share, limits, LOWER, confidence)
        row["hosts"] = {"batch": batch.shares(route), "baseline": baseline.shares(route)}
        rows.append(row)
    codes = set()
    for side in (batch, baseline):
        for routes in side.by_host.values():
            for name, by_code in routes.items():
                if route is None or name == route:
                    codes |= {str(code) for code in by_code if str(code).startswith("4")}
    kinds = [("error_ratio", "5xx", _is_5xx)]
    kinds += [("client_error_ratio", code, _code_is(code)) for code in sorted(codes)]
    for check, label, matches in kinds:
        scope = route if route is not None else frozenset((own or {}).get(check, ()))
        hosts = {
            "batch": batch.per_host(scope, matches),
            "baseline": baseline.per_host(scope, matches),
        }
        row = _count_row(
            check,
            route or ALL_ROUTES,
            _summed(hosts["batch"]),
            _summed(hosts["baseline"]),
            limits,
            HIGHER,
            confidence,
            new=new,
        )
        row["status"] = label
        row["hosts"] = hosts
        rows.append(row)
    return rows


def _count_row(check, scope, batch, baseline, limits, direction, confidence, new=False):
    threshold = limits[check]
    base_share = _share(*baseline)
    limit = _limit(base_share, threshold, direction) if base_share is not None else None
    row = {
        "check": check,
        "scope": scope,
        "direction": direction,
        "batch": _share(*batch),
        "baseline": base_share,
        "counts": {"batch": list(batch), "baseline": list(baseline)},
    }
    new_limit = threshold["absolute"] if new else None
    row.update(judge_counts(batch, baseline, limit, direction, confidence, new_limit))
    if new:
        row["why"] = ("new route (no baseline): " + row.get("why", "")).rstrip(": ")
    return row


def _cumulative(buckets, route):
    """[(upper bound, requests at or under it)] of a route, sorted, +Inf last."""
    found = sorted((float(le), count) for (name, le), count in buckets.items() if name == route)
    return [(le, round(count)) for le, count in found]


def quantile(q, cumulative):
    """Like PromQL's histogram_quantile: linear within the bucket q falls in."""
    if not cumulative or cumulative[-1][1] == 0:
        return None
    rank = q * cumulative[-1][1]
    lower_bound, lower_count = 0.0, 0
    for bound, count in cumulative:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            inside = count - lower_count
            return lower_bound + (bound - lower_bound) * (
                (rank - lower_count) / inside if inside else 0
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def _latency_rows(route, batch_buckets, base_buckets, limits, confidence):
    """Per quantile: the baseline's quantile makes a limit in seconds; the bucket
    boundary nearest it (by ratio) splits the requests into fast and slow on both sides; the
    batch fails when more than (1 - q) of its requests are slow and significantly more
    than the baseline's share."""
    batch_cum, base_cum = _cumulative(batch_buckets, route), _cumulative(base_buckets, route)
    rows = []
    for check, q in QUANTILES.items():
        row = {"check": check, "scope": route, "direction": HIGHER}
        base_q, batch_q = quantile(q, base_cum), quantile(q, batch_cum)
        row.update(batch=batch_q, baseline=base_q)
        if batch_q is None:
            rows.append({**row, "verdict": NO_DATA, "why": "no requests on the batch"})
            continue
        if base_q is None:
            rows.append({**row, "verdict": NO_DATA, "why": "new route: latency has no baseline"})
            continue
        seconds = _limit(base_q, limits[check], HIGHER)
        bounds = [bound for bound, _count in base_cum if 0 < bound < float("inf")]
        if not bounds:
            rows.append(
                {**row, "limit": seconds, "verdict": NO_DATA, "why": "no bucket boundaries"}
            )
            continue
        bound = min(bounds, key=lambda bound: abs(math.log(bound / seconds)))
        slow = [(cum[-1][1] - dict(cum).get(bound, 0), cum[-1][1]) for cum in (batch_cum, base_cum)]
        found = judge_counts(slow[0], slow[1], 1.0 - q, HIGHER, confidence)
        rows.append(
            {
                **row,
                **found,
                "limit": seconds,
                "slow_over": bound,
                "counts": {"batch": list(slow[0]), "baseline": list(slow[1])},
            }
        )
    return rows


def host_row(check, batch_hosts, base_values, threshold, direction):
    """One row per host-level check: every batch host against the baseline hosts'
    median. base_values: {instance: value} of the baseline (those with data)."""
    row = {"check": check, "scope": "hosts", "direction": direction}
    values = dict(batch_hosts)
    row["hosts"] = {"batch": values, "baseline": dict(base_values)}
    known = {host: value for host, value in values.items() if value is not None}
    if not known and not base_values:
        return {
            **row,
            "batch": None,
            "baseline": None,
            "verdict": NO_DATA,
            "why": "no data anywhere",
        }
    base = median(list(base_values.values())) if base_values else None
    worst_of = min if direction == LOWER else max
    row.update(batch=worst_of(known.values()) if known else None, baseline=base)
    missing = sorted(host for host, value in values.items() if value is None)
    if missing and base_values:
        return {
            **row,
            "verdict": FAIL,
            "why": f"no data from {', '.join(missing)} (the baseline has it)",
        }
    limit = _limit(base if base is not None else 0.0, threshold, direction)
    row["limit"] = limit
    past = sorted(host for host, value in known.items() if _past(value, limit, direction))
    if past:
        return {**row, "verdict": FAIL, "why": f"{', '.join(past)} past the limit"}
    return {
        **row,
        "verdict": PASS,
        "why": "" if base_values else "no baseline: held to the absolute margin",
    }


def analyse(
    batch,
    baseline,
    batch_hosts,
    thresholds=None,
    route_thresholds=None,
    checks=(),
    confidence=0.99,
    probe_routes=DEFAULT_PROBE_ROUTES,
):
    """Rows for every check. batch and baseline: one side's results each, as
    canary_promql.side_results() gives them: {"requests": {(instance, route, code):
    count}, "buckets": {(route, le): count}, "lb_responses": {(server, class): count},
    "hosts": {check: {instance: value}}, "custom": {name: {instance or "": value}}}.
    batch_hosts: the batch's instances (a host with no series is missing data)."""
    limits, per_route = thresholds_with(thresholds, route_thresholds)
    traffic = [Traffic(side.get("requests", {}), probe_routes) for side in (batch, baseline)]
    rows = []
    if traffic[0].total() and traffic[1].total():
        own = {}
        for route, route_checks in per_route.items():
            for check in route_checks:
                own.setdefault(check, set()).add(route)
        rows += _route_rows(None, traffic[0], traffic[1], limits, confidence, own)
        for route in sorted(set(traffic[0].routes()) | set(traffic[1].routes())):
            route_limits = dict(limits, **per_route.get(route, {}))
            rows += _route_rows(route, traffic[0], traffic[1], route_limits, confidence)
            buckets = [side.get("buckets", {}) for side in (batch, baseline)]
            rows += _latency_rows(route, buckets[0], buckets[1], route_limits, confidence)
    rows += _lb_rows(batch, baseline, limits, confidence)
    for check, direction in HOST_CHECKS.items():
        if check == "user_requests":  # from the traffic, not a query of its own
            found, base = (
                {host: counts[1] for host, counts in side.per_host(frozenset(), _any).items()}
                for side in traffic
            )
        else:
            found, base = (side.get("hosts", {}).get(check, {}) for side in (batch, baseline))
        values = {
            host: found.get(host, 0 if check == "user_requests" else None) for host in batch_hosts
        }
        rows.append(host_row(check, values, base, limits[check], direction))
    rows += [_custom_row(check, batch, baseline, batch_hosts) for check in checks]
    return rows


def _lb_rows(batch, baseline, limits, confidence):
    """HAProxy's view of the servers: their 5xx share of the answers it passed on."""
    sides = []
    for side in (batch, baseline):
        responses = side.get("lb_responses", {})
        total = round(sum(responses.values()))
        bad = round(sum(count for (_server, kind), count in responses.items() if kind == "5xx"))
        sides.append((bad, total))
    if not sides[1][1] and not sides[0][1]:
        return [
            {
                "check": "lb_error_ratio",
                "scope": "hosts",
                "batch": None,
                "baseline": None,
                "verdict": NO_DATA,
                "why": "no data anywhere",
            }
        ]
    return [_count_row("lb_error_ratio", "hosts", sides[0], sides[1], limits, HIGHER, confidence)]


def _custom_row(check, batch, baseline, batch_hosts):
    """An operator's check: per host when its query keeps `instance`, else one number
    a side."""
    threshold = {"relative": check["relative"], "absolute": check["absolute"]}
    found = batch.get("custom", {}).get(check["name"], {})
    base = baseline.get("custom", {}).get(check["name"], {})
    if "" in found or "" in base:
        values = {"(batch)": found.get("")}
        base_values = {"(baseline)": base[""]} if base.get("") is not None else {}
    else:
        values = {host: found.get(host) for host in batch_hosts}
        base_values = {host: value for host, value in base.items() if value is not None}
    row = host_row(check["name"], values, base_values, threshold, check["direction"])
    row["scope"] = "operator"
    row.update(critical=check["critical"], dry_run=check["dry_run"])
    if row["verdict"] == FAIL and check["dry_run"]:
        row["verdict"], row["why"] = WARN, "dry run, would fail: " + row["why"]
    elif row["verdict"] == FAIL and not check["critical"]:
        row["verdict"], row["why"] = WARN, "not critical: " + row["why"]
    return row


def verdict(rows, busy_share=0.05):
    """(verdict, reason). fail if any row fails, or if no check has data at all (not a
    quiet fleet: a fleet Prometheus does not see); inconclusive with no user traffic, or
    while a row of a route carrying at least busy_share of the baseline's traffic (or of
    all routes) cannot be decided; pass otherwise (rows with no data are said, and no
    row with no data ever made anything pass)."""
    failed = [row for row in rows if row["verdict"] == FAIL]
    if failed:
        return FAIL, "; ".join(_failure(row) for row in failed)
    if all(row["verdict"] == NO_DATA for row in rows if row["check"] != "user_requests"):
        return FAIL, "no data at all for the batch or the baseline: is Prometheus scraping them?"
    shares = {
        row["scope"]: row.get("baseline") or 0.0 for row in rows if row["check"] == "traffic_share"
    }
    if not any(row["scope"] == ALL_ROUTES for row in rows):
        return INCONCLUSIVE, "no user traffic (health checks and scrapes are not judged)"
    waiting = [
        row
        for row in rows
        if row["verdict"] == INCONCLUSIVE
        and (row["scope"] == ALL_ROUTES or shares.get(row["scope"], 0.0) >= busy_share)
    ]
    if waiting:
        return INCONCLUSIVE, "; ".join(
            f"{row['check']} on {row['scope']}: {row['why']}" for row in waiting
        )
    return PASS, ""


def _failure(row):
    shown = f"{row['check']} on {row['scope']}"
    if row.get("status"):
        shown += f" ({row['status']})"
    if isinstance(row.get("batch"), float) and isinstance(row.get("limit"), float):
        shown += f": {row['batch']:.4g} past its limit {row['limit']:.4g}"
    return shown + (f", {row['why']}" if row.get("why") else "")
